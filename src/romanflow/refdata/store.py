"""The embedded default reference store.

A store is a folder holding one context file (:data:`CONTEXT_NAME`
``.context.yaml``) and the reference files it names, synthesized from
:class:`~romanflow.detector_model.DetectorModel`. The context lists every file
the store can provide (18 detectors × all types × imaging filters); each file
is written on first use and kept. Stores of different science sizes,
parameter seeds or synthesized values live in separate folders:

``$ROMANFLOW_REFDATA/<size>_<fingerprint>/`` (default
``~/.cache/romanflow/refdata/<size>_<fingerprint>/``), the fingerprint being
:func:`~romanflow.refdata.fingerprint.parameter_fingerprint` of the values the files hold.

Several processes may share a store: a file is produced under an exclusive
lock and appears under its final name only once complete.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from romanflow.detector import DETECTORS, IMAGING_FILTERS, N_PIX_SCIENCE, total_size
from romanflow.detector_model import DEFAULT_MODEL_SEED
from romanflow.errors import RomanflowError
from romanflow.formats.reference_io import EXPOSURE_TYPES
from romanflow.refdata.context import NOT_APPLICABLE, PARKEYS, Context, Rule
from romanflow.refdata.fingerprint import parameter_fingerprint
from romanflow.refdata.synthesize import FILE_VERSION, SYNTH_TYPES, SYNTH_USEAFTER, synthesize_reference

#: Name (and version) of the context the embedded store writes.
CONTEXT_NAME = "romanflow_0001"
#: Environment variable naming the folder that holds the stores.
STORE_ENV = "ROMANFLOW_REFDATA"


def default_store_root() -> Path:
    """Folder holding the per-size stores: ``$ROMANFLOW_REFDATA`` or ``~/.cache/romanflow/refdata``."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "romanflow" / "refdata"


def stale_stores(root=None) -> list[tuple[Path, int]]:
    """Stores under ``root`` made by another version of the parameter model: (folder, bytes).

    A store is a folder named ``<size>_<fingerprint>[_seed<n>]`` that holds a ``*.context.yaml``
    file; nothing else is ever listed. ``InputFileError`` when ``root`` is not a folder.
    """
    import re

    from romanflow.errors import InputFileError

    base = Path(root).expanduser() if root is not None else default_store_root()
    if root is not None and not base.is_dir():
        raise InputFileError(base, "not a folder of reference stores")
    current = parameter_fingerprint()
    out = []
    for folder in sorted(base.glob("*")) if base.is_dir() else []:
        match = re.fullmatch(r"\d+_([0-9a-f]{10})(?:_seed\d+)?", folder.name)
        is_store = folder.is_dir() and not folder.is_symlink() and any(folder.glob("*.context.yaml"))
        if is_store and match and match.group(1) != current:
            out.append((folder, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())))
    return out


def reference_filename(reftype: str, detector: str | None = None, optical_element: str | None = None) -> str:
    """File name of a synthesized reference, e.g. ``roman_wfi_flat_wfi07_f158_0002.asdf``."""
    parts = ["roman_wfi", reftype.lower()]
    if detector:
        parts.append(detector.lower())
    if optical_element:
        parts.append(optical_element.lower())
    return "_".join(parts) + f"_{FILE_VERSION}.asdf"


class ReferenceStore:
    """A folder of synthesized reference files with the context that selects them.

    Parameters
    ----------
    root : str or Path, optional
        Folder holding the stores (default :func:`default_store_root`); this
        store lives in ``root/<science_size>_<fingerprint>`` (``_seed<seed>``
        appended for a non-default parameter seed), see :func:`parameter_fingerprint`.
    science_size : int
        Science pixels per side (4088 full size).
    seed : int
        Parameter-set seed of the :class:`DetectorModel`.
    """

    def __init__(self, root=None, science_size: int = N_PIX_SCIENCE, seed: int = DEFAULT_MODEL_SEED):
        total_size(science_size)  # validates
        self.science_size = int(science_size)
        self.seed = int(seed)
        base = Path(root).expanduser() if root is not None else default_store_root()
        name = f"{self.science_size}_{parameter_fingerprint()}"
        name += "" if self.seed == DEFAULT_MODEL_SEED else f"_seed{self.seed}"
        self.directory = base / name
        self._recipes: dict[str, tuple] = {}
        self.context = self._build_context()
        self._write_context()

    def __repr__(self):
        return f"ReferenceStore({str(self.directory)!r}, science_size={self.science_size})"

    # --- context -----------------------------------------------------------------
    @property
    def context_path(self) -> Path:
        return self.directory / f"{CONTEXT_NAME}.context.yaml"

    def _add(self, rules, reftype, match, detector=None, optical_element=None):
        filename = reference_filename(reftype, detector, optical_element)
        self._recipes[filename] = (reftype, detector, optical_element)
        rules.append(Rule(match, {SYNTH_USEAFTER: filename}))

    def _build_context(self) -> Context:
        rules = {reftype: [] for reftype in PARKEYS}
        for detector in DETECTORS:
            for reftype in ("mask", "saturation", "linearity", "inverselinearity", "gain", "photom"):
                self._add(rules[reftype], reftype, {"instrument.detector": detector}, detector)
            for reftype in ("dark", "readnoise"):
                match = {"instrument.detector": detector, "exposure.type": list(EXPOSURE_TYPES)}
                self._add(rules[reftype], reftype, match, detector)
            for reftype in ("flat", "distortion"):
                for element in IMAGING_FILTERS:
                    match = {"instrument.detector": detector, "instrument.optical_element": element}
                    self._add(rules[reftype], reftype, match, detector, element)
        for element in IMAGING_FILTERS:  # PSF libraries, synthesized by romanflow.psf (registered there)
            for detector in DETECTORS:
                match = {"instrument.detector": detector, "instrument.optical_element": element}
                self._add(rules["epsf"], "epsf", match, detector, element)
        for reftype in ("flat", "distortion", "epsf"):
            # Spectroscopic and dark exposures have no imaging flat or distortion.
            match = {"instrument.detector": NOT_APPLICABLE, "instrument.optical_element": ["GRISM", "PRISM", "DARK"]}
            rules[reftype].append(Rule(match, {SYNTH_USEAFTER: NOT_APPLICABLE}))
        # REFPIX coefficients: one row for all channels (the model's common noise is the same in all).
        for detector in DETECTORS:
            self._add(rules["refpix"], "refpix", {"instrument.detector": detector}, detector)
        self._add(rules["matable"], "matable", {})
        self._add(rules["darkdecaysignal"], "darkdecaysignal", {})
        assert set(SYNTH_TYPES) <= set(rules)
        header = {
            "description": "romanflow embedded reference store: files synthesized from DetectorModel on first use",
            "science_size": self.science_size,
            "model_seed": self.seed,
        }
        return Context(CONTEXT_NAME, rules, root=self.directory, provider=self, header=header)

    def _write_context(self) -> None:
        text = self.context.to_yaml()
        path = self.context_path
        try:
            if path.is_file() and path.read_text() == text:
                return
            self.context.save(path)
        except OSError as exc:
            raise RomanflowError(f"cannot write the reference store at {self.directory}: {exc}") from None

    # --- files ---------------------------------------------------------------------
    def filenames(self, detectors=None, filters=None, reftypes=None) -> list[str]:
        """Files the store provides, optionally restricted, in build order (detector by detector)."""
        detectors = None if detectors is None else {d.upper() for d in detectors}
        filters = None if filters is None else {f.upper() for f in filters}
        reftypes = None if reftypes is None else {r.lower() for r in reftypes}
        names = []
        for name, (reftype, detector, element) in self._recipes.items():
            if reftypes is not None and reftype not in reftypes:
                continue
            if detectors is not None and detector is not None and detector not in detectors:
                continue
            if filters is not None and element is not None and element not in filters:
                continue
            names.append(name)
        order = {d: i for i, d in enumerate(DETECTORS)}
        return sorted(names, key=lambda n: order.get(self._recipes[n][1], -1))

    def materialize(self, filename: str) -> Path:
        """Path of a store file, synthesizing it first if it is not there yet."""
        path = self.directory / filename
        if path.exists():
            return path
        recipe = self._recipes.get(filename)
        if recipe is None:
            raise RomanflowError(f"the reference store {self.directory} cannot provide {filename}")
        reftype, detector, element = recipe
        lock_dir = self.directory / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{filename}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not path.exists():  # another process may have made it while we waited
                    synthesize_reference(path, reftype, detector, self.science_size, element, self.seed)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return path

    def build(self, detectors=None, filters=None, reftypes=None, progress: bool = False) -> dict:
        """Produce the store's files (all but the PSF libraries, or a subset); returns figures of the run.

        Returns
        -------
        dict
            ``files`` (count), ``built`` (newly written), ``bytes`` (size of those
            files on disk) and ``seconds`` (wall time).
        """
        if reftypes is None:  # PSF libraries (~20 s each) only when asked for
            from romanflow.refdata.synthesize import PLUGIN_TYPES

            reftypes = [t for t in PARKEYS if t not in PLUGIN_TYPES]
        names = self.filenames(detectors, filters, reftypes)
        start = time.perf_counter()
        built = 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(names), unit="file", desc=f"refdata {self.science_size}")
        for name in names:
            if bar is not None:
                bar.set_postfix_str(name, refresh=False)
            if not (self.directory / name).exists():
                self.materialize(name)
                built += 1
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        size = sum((self.directory / n).stat().st_size for n in names)
        return {"files": len(names), "built": built, "bytes": size, "seconds": time.perf_counter() - start}

    def size_bytes(self) -> int:
        """Bytes of reference files present in the store."""
        return sum(p.stat().st_size for p in self.directory.glob("*.asdf"))


_STORES: dict = {}


def default_store(science_size: int | None = None, root=None, seed: int = DEFAULT_MODEL_SEED) -> ReferenceStore:
    """The embedded store for a science size (full detector by default)."""
    size = N_PIX_SCIENCE if science_size is None else int(science_size)
    base = Path(root).expanduser() if root is not None else default_store_root()
    key = (str(base.resolve()), size, seed)
    if key not in _STORES:
        _STORES[key] = ReferenceStore(base, size, seed)
    return _STORES[key]
