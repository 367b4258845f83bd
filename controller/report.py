"""Plans and problem lists as text (terminals), Markdown (pull-request comments) or JSON.

The presentation end of the pure core: values in, strings out. Markdown carries a Mermaid
graph of the public models, their providers and fallbacks, since that is what a reviewer
of a routing change wants to see at a glance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from controller.errors import Problem
from controller.plan import Action, Plan
from controller.render import Desired

MARKER = "<!-- llm-gitops-plan -->"
STOPS_FIRST = "stops before anything starts: frees a GPU or port"


def problems_text(problems: Sequence[Problem]) -> str:
    errors = [p for p in problems if p.is_error]
    warnings = [p for p in problems if not p.is_error]
    out = [p.format() for p in errors]
    if warnings:
        out += ([""] if errors else []) + [p.format() for p in warnings]
    out.append(f"{len(errors)} error(s), {len(warnings)} warning(s)")
    return "\n".join(out)


def _short(rev: str) -> str:
    return rev[:12] if len(rev) == 40 else rev


def plan_text(plan: Plan, *, base: str, head: str) -> str:
    lines = [f"Plan: {_short(base)} -> {_short(head)}", *(f"Note: {n}" for n in plan.preface)]
    if not plan.has_changes:
        lines.append("No changes: nothing restarts, the gateway config stays the same.")
    lines += ["", "Containers:"]
    unchanged = []
    for step in plan.steps:
        if step.action is Action.UNCHANGED:
            unchanged.append(step.name)
            continue
        lines.append(f"  {step.action.value:<9} {step.name}" + (f"  ({STOPS_FIRST})" if step.stops_first else ""))
        lines += [f"              because {r}" for r in step.reasons]
    if unchanged:
        lines.append(f"  unchanged {', '.join(unchanged)}")
    models = _model_lines(plan)
    if models:
        lines += ["", "Public models:", *(f"  {m}" for m in models)]
    if plan.notes:
        lines += ["", "Impact:", *(f"  - {n}" for n in plan.notes)]
    if plan.warnings:
        lines += ["", "Warnings this change brings:", *(f"  {w.format()}" for w in plan.warnings)]
    if plan.known_warnings:
        lines += ["", f"({_already(plan.known_warnings)})"]
    if plan.config_diff:
        lines += ["", "LiteLLM config diff:", plan.config_diff.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _already(count: int) -> str:
    return f"{count} warning(s) that the base commit had already are not repeated; `llm-gitops validate` lists them"


def _model_lines(plan: Plan) -> list[str]:
    return ([f"+ {m}" for m in plan.models_added] + [f"- {m}" for m in plan.models_removed]
            + [f"~ {m}: {a} -> {b}" for m, (a, b) in plan.models_rerouted.items()])


def plan_markdown(plan: Plan, head_desired: Desired, *, base: str, head: str) -> str:
    lines = [MARKER, f"### llm-gitops plan: `{_short(base)}` → `{_short(head)}`", ""]
    lines += [f"> **Note:** {_cell(n)}" for n in plan.preface] + ([""] if plan.preface else [])
    if not plan.has_changes:
        lines += ["**No changes.** Nothing restarts; the gateway config stays the same.", ""]
    else:
        changed = plan.changes
        lines += [f"**{len(changed)} container(s) change.**", "",
                  "| Action | Container | Why |", "|---|---|---|"]
        for step in changed:
            why = "<br>".join(_code(r) for r in step.reasons)
            stops = f"<br>_{STOPS_FIRST}_" if step.stops_first else ""
            lines.append(f"| **{step.action.value}** | {_code(step.name)}{stops} | {why} |")
        unchanged = [s.name for s in plan.steps if s.action is Action.UNCHANGED]
        if unchanged:
            lines += ["", "Unchanged: " + ", ".join(_code(n) for n in unchanged)]
        lines.append("")
    models = _model_lines(plan)
    if models:
        lines += ["#### Public models", "", "```diff", *models, "```", ""]
    if plan.notes:
        lines += ["#### Impact", "", *(f"- {_cell(n)}" for n in plan.notes), ""]
    if plan.warnings:
        lines += ["#### Warnings this change brings", "",
                  *(f"- {_code(f'{w.file}:{w.line}')} {_cell(w.subject)}: {_cell(w.message)}" for w in plan.warnings), ""]
    if plan.known_warnings:
        lines += [f"_{_already(plan.known_warnings)}_", ""]
    lines += ["#### Routing at head", "", "```mermaid", *mermaid(head_desired), "```", ""]
    if plan.config_diff:
        lines += ["<details><summary>LiteLLM config diff</summary>", "", "```diff",
                  plan.config_diff.rstrip("\n"), "```", "", "</details>", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell or list item: a `|` in a model name ends a cell."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    """Inline code whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def mermaid(desired: Desired) -> list[str]:
    """`graph LR`: public models -> providers (solid), fallbacks (dashed), aliases (thick)."""
    lines = ["graph LR"]
    ids: dict[str, str] = {}

    def node(kind: str, name: str) -> str:
        key = f"{kind}:{name}"
        if key not in ids:
            ids[key] = f"{kind}{len(ids)}"
            shape = {"m": ("[", "]"), "p": ("[(", ")]"), "a": ("{{", "}}")}[kind]
            lines.append(f"  {ids[key]}{shape[0]}{_label(name)}{shape[1]}")
        return ids[key]

    edges = []
    for public, routes in desired.routes.items():
        for route in routes:
            provider = route.split("/", 1)[0]
            edges.append(f"  {node('m', public)} --> {node('p', provider)}")
    for alias, target in desired.aliases.items():
        edges.append(f"  {node('a', alias)} ==alias==> {node('m', target)}")
    for name, chain in desired.fallbacks.items():
        source = node("a", name) if name in desired.aliases else node("m", name)
        for i, target in enumerate(chain, 1):
            target_id = node("a", target) if target in desired.aliases else node("m", target)
            edges.append(f"  {source} -. fallback {i} .-> {target_id}")
    return lines + edges


def plan_json(plan: Plan, *, base: str, head: str) -> str:
    body: dict[str, Any] = {"base": base, "head": head, **plan.as_dict()}
    return json.dumps(body, indent=2, sort_keys=False) + "\n"
