"""`--help`: every field of a command config with its docstring and default, tables and `type` variants nested."""

from __future__ import annotations

from typing import Any, get_origin

from pydantic import BaseModel

from prime_rl.utils.config.base import model_types, type_tag


def _describe(model: type[BaseModel], prefix: str = "", defaults: Any = None) -> list[str]:
    """Help lines of `model`'s fields; `defaults` is the field's default instance, whose values a section may set
    apart from its class (e.g. `log.file` is on for the trainer, off for the orchestrator)."""
    lines = []
    for name, field in model.model_fields.items():
        flag = f"--{prefix}{name}".replace("_", "-")
        if name == "type" and type_tag(model) is not None:
            continue
        default = (
            getattr(defaults, name) if isinstance(defaults, model) else field.get_default(call_default_factory=True)
        )
        variants = model_types(field.annotation)
        if variants:
            tags = [t for v in variants if (t := type_tag(v)) is not None]
            kind = "list of tables" if get_origin(field.annotation) is list else "table"
            choice = f" (type: {' | '.join(tags)})" if len(variants) > 1 else ""
            lines.append(f"  {flag}  [{kind}{choice}] {field.description or ''}")
            for variant in variants:
                tag = type_tag(variant)
                options = _describe(variant, f"{prefix}{name}.", default)
                if len(variants) > 1 and tag is not None:
                    lines.append(f"    with {flag}.type = {tag!r}:{'' if options else ' (no options)'}")
                lines.extend(options)
            continue
        shown = "" if field.is_required() else f" [default: {default!r}]"
        lines.append(f"  {flag}  {field.description or ''}{shown}")
    return list(dict.fromkeys(lines))


def help_text(cls: type[BaseModel], prog: str) -> str:
    head = f"usage: {prog} [@ config.toml ...] [--key value ...]\n\n{(cls.__doc__ or '').strip()}\n\noptions:"
    env = "\nEnvironment variables PRIME_<SECTION>__<KEY> set values below TOML files and the command line."
    return "\n".join([head, *_describe(cls), env])
