"""The spec: models of the three files users push to git, their loader and their rules.

Entry point of the pure core: `load_files({name: text}) -> Loaded`. Nothing in this
package performs I/O; adapters read the files from a directory or a git commit.
"""

from controller.spec.load import FILES, MAPPINGS, PROVIDERS, STACK, Loaded, load_files
from controller.spec.models import Spec

__all__ = ["FILES", "MAPPINGS", "PROVIDERS", "STACK", "Loaded", "Spec", "load_files"]
