"""Engine options, declared once: the Python API, the daemon's ``model:`` keys and the command-line flags.

``BackendOptions`` is what a back end receives; ``EngineConfig`` adds which back end runs the model. The
daemon's model config extends ``EngineConfig`` (so its YAML keys are these field names), and
``add_engine_arguments`` makes a command's flags from the fields that name one, with the field's default,
choices and description. A new engine option is therefore one field here.

Both are pydantic dataclasses: validated like every config, and still real dataclasses, so callers that
derive options with ``dataclasses.replace`` keep working.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal, get_args, get_origin

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

BackendName = Literal["auto", "litert", "onnxruntime", "openvino"]
Provider = Literal["tensorrt", "cuda", "cpu"]

_STRICT = ConfigDict(extra="forbid")


def _flag(name: str) -> dict:
    """Field metadata: the option is also the command-line flag ``name``."""
    return {"flag": name}


@dataclass(config=_STRICT)
class BackendOptions:
    """Engine settings; each back end uses the ones that apply to it and ignores the rest."""

    num_threads: int | None = Field(None, ge=1, description="inference threads (None: the engine's default)")
    delegate: str | None = Field(None, description="litert: shared library of a TFLite delegate (EdgeTPU, GPU)")
    device: str = Field("CPU", description="openvino device: CPU, GPU, NPU or AUTO",
                        json_schema_extra=_flag("--device"))
    providers: tuple[Provider, ...] = Field(
        ("cpu",), description="onnxruntime providers in order, comma-separated: tensorrt,cuda,cpu",
        json_schema_extra=_flag("--providers"))
    cache_dir: str | None = Field(None, description="openvino model cache / TensorRT engine cache folder",
                                  json_schema_extra=_flag("--cache-dir"))
    fp16: bool = Field(True, description="tensorrt: build fp16 engines")


@dataclass(config=_STRICT, kw_only=True)
class EngineConfig(BackendOptions):
    """Which back end runs a model, and its settings (``auto``: by file type and what is installed)."""

    backend: BackendName = Field("auto", description="engine for --model; auto picks by file type and what is installed",
                                 json_schema_extra=_flag("--backend"))

    def options(self) -> BackendOptions:
        """The settings alone, as a back end receives them."""
        return BackendOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(BackendOptions)})


def add_engine_arguments(parser: argparse.ArgumentParser, model=EngineConfig) -> None:
    """One flag per field of ``model`` that names one (a subclass's own fields first: --backend leads); the
    parsed value is already the field's type."""
    own_first = dict.fromkeys(name for cls in model.__mro__ for name in vars(cls).get("__annotations__", {}))
    for name in own_first:
        info = model.__pydantic_fields__[name]
        flag = (info.json_schema_extra or {}).get("flag")
        if flag is None:
            continue
        kwargs: dict = {"dest": name, "default": info.default}
        if get_origin(info.annotation) is Literal:
            kwargs["choices"] = get_args(info.annotation)
        elif get_origin(info.annotation) is tuple:
            kwargs["type"] = _comma_list(flag, get_args(get_args(info.annotation)[0]), info.default)
            kwargs["default"] = ",".join(info.default)  # argparse passes a string default through ``type``
        shown = "" if info.default is None else f" (default {kwargs['default']})"
        parser.add_argument(flag, help=f"{info.description}{shown}", **kwargs)


def _comma_list(flag: str, choices: tuple[str, ...], default: tuple[str, ...]):
    """``a,b`` -> ("a", "b"), lower-cased, each one of ``choices`` (an empty list means the default)."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(p.strip().lower() for p in text.split(",") if p.strip()) or default
        for item in items:
            if item not in choices:
                raise argparse.ArgumentTypeError(f"unknown {flag[2:]} value {item!r} (choose from {', '.join(choices)})")
        return items

    return parse


def options_from_args(args: argparse.Namespace) -> BackendOptions:
    """BackendOptions from the flags ``add_engine_arguments`` made, plus the command's ``--threads`` where
    that is one number (a benchmark's list of thread counts is applied per run instead)."""
    given = vars(args)
    values = {f.name: given[f.name] for f in dataclasses.fields(BackendOptions) if f.name in given}
    if isinstance(given.get("threads"), int):
        values["num_threads"] = given["threads"]
    return backend_options(**values)


def backend_options(base: BackendOptions | None = None, **changes) -> BackendOptions:
    """``base`` (or the defaults) with ``changes``, validated: a bad value (``--threads 0``) is a one-line
    ConfigError naming the option, not a pydantic traceback."""
    from pydantic import ValidationError

    from squeezedet.config import format_validation_error
    from squeezedet.errors import ConfigError

    try:
        return dataclasses.replace(base, **changes) if base is not None else BackendOptions(**changes)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "engine options")) from None
