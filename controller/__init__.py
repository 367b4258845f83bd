"""llm-gitops: a GitOps controller for self-hosted LLM inference stacks (LiteLLM + vLLM/Ollama/llama.cpp)."""

__version__ = "0.1.0"
