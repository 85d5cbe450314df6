"""Reference contexts: rules from exposure parameters to reference files.

A context is a versioned YAML file (``romanflow_NNNN.context.yaml``) that,
for each reference type, lists rules. A rule matches exposure metadata on the
type's selection keys (the CRDS "parkeys": detector, optical element,
exposure type, MA table number …) and lists files by USEAFTER date::

    context: romanflow_0001
    reftypes:
      flat:
        parkeys: [instrument.detector, instrument.optical_element]
        rules:
          - match: {instrument.detector: WFI01, instrument.optical_element: F158}
            useafter: {'2020-01-01T00:00:00': roman_wfi_flat_wfi01_f158.asdf}

A rule value is a single value, a list of accepted values, or ``N/A`` (any
value, or none). A file name of ``N/A`` means the type does not apply (the
step that needs it is skipped). File names are relative to the context
file's folder unless absolute.

The best reference is the one whose rule matches on every parkey (preferring
rules with fewer ``N/A``), with the latest USEAFTER at or before
``meta.exposure.start_time``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from romanflow.errors import InputFileError, ReferenceSelectionError, RomanflowError
from romanflow.exposure import get_meta
from romanflow.formats.reference_io import REFERENCE_TYPES, model_class_name

#: Selection keys of each reference type (metadata paths under ``meta``).
PARKEYS = {
    "mask": ("instrument.detector",),
    "saturation": ("instrument.detector",),
    "refpix": ("instrument.detector",),
    "linearity": ("instrument.detector",),
    "inverselinearity": ("instrument.detector",),
    "gain": ("instrument.detector",),
    "photom": ("instrument.detector",),
    "dark": ("instrument.detector", "exposure.type"),
    "readnoise": ("instrument.detector", "exposure.type"),
    "flat": ("instrument.detector", "instrument.optical_element"),
    "distortion": ("instrument.detector", "instrument.optical_element"),
    "matable": (),
}

#: Metadata giving the observation date compared with USEAFTER.
DATE_KEY = "exposure.start_time"
NOT_APPLICABLE = "N/A"


def _norm(value) -> str:
    return str(value).strip().upper()


def _time(value):
    """An astropy Time (UTC) from a Time, an ISO string (``T`` or space separated) or a datetime."""
    import warnings

    from astropy.time import Time
    from erfa import ErfaWarning

    with warnings.catch_warnings():
        # Dates past the known leap seconds are "dubious" to ERFA but fine for ordering.
        warnings.simplefilter("ignore", ErfaWarning)
        if isinstance(value, Time):
            time = value.utc
        else:
            text = str(value).strip()
            time = Time(text.replace(" ", "T", 1) if " " in text and "T" not in text else text, scale="utc")
    return time


def _mjd(value) -> float:
    import warnings

    from erfa import ErfaWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        return float(_time(value).mjd)


@dataclass
class Rule:
    """One rule: parkey values it matches and its files by USEAFTER date."""

    match: dict
    useafter: dict  # ISO date string -> file name (or N/A)

    def matches(self, meta: dict) -> tuple[bool, int]:
        """Whether the rule matches ``meta``, and how many parkeys matched exactly."""
        exact = 0
        for key, accepted in self.match.items():
            values = accepted if isinstance(accepted, (list, tuple)) else [accepted]
            if any(_norm(v) == NOT_APPLICABLE for v in values):
                continue
            have = get_meta(meta, key)
            if have is None or _norm(have) not in {_norm(v) for v in values}:
                return False, 0
            exact += 1
        return True, exact


@dataclass
class Context:
    """Rules of a context, with the folder its file names are relative to.

    Attributes
    ----------
    name : str
        Context name, e.g. ``'romanflow_0001'``.
    rules : dict
        reftype -> list of :class:`Rule`.
    root : Path
        Folder that relative file names refer to.
    provider : object, optional
        A store that can produce a missing file on demand (``materialize(name)``).
    header : dict
        Other top-level entries of the file (description, store parameters).
    """

    name: str
    rules: dict
    root: Path
    provider: object = None
    header: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path, provider=None) -> "Context":
        """Read a context YAML file."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "no such context file")
        try:
            tree = yaml.safe_load(path.read_text())
            rules = {
                str(reftype).lower(): [
                    Rule(dict(r.get("match") or {}), {str(k): str(v) for k, v in r["useafter"].items()})
                    for r in entry.get("rules", [])
                ]
                for reftype, entry in tree["reftypes"].items()
            }
            name = str(tree["context"])
            for rule in (r for rs in rules.values() for r in rs):
                for date in rule.useafter:
                    try:
                        _mjd(date)
                    except Exception:
                        raise ValueError(f"USEAFTER {date!r} is not a date") from None
        except Exception as exc:  # yaml errors, missing keys, wrong types
            raise InputFileError(path, f"not a valid reference context: {exc}".splitlines()[0]) from None
        header = {k: v for k, v in tree.items() if k not in ("reftypes", "context")}
        return cls(name=name, rules=rules, root=path.parent, provider=provider, header=header)

    def to_yaml(self) -> str:
        import yaml

        tree = {"context": self.name, **self.header, "reftypes": {}}
        for reftype, rules in self.rules.items():
            tree["reftypes"][reftype] = {
                "parkeys": list(PARKEYS.get(reftype, ())),
                "rules": [{"match": r.match, "useafter": r.useafter} for r in rules],
            }
        return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=120)

    def save(self, path) -> Path:
        """Write the context as YAML (atomically)."""
        from romanflow.formats.asdf_io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_yaml())
        return path

    @property
    def reftypes(self) -> tuple:
        return tuple(self.rules)

    def select_rule(self, reftype: str, meta: dict) -> tuple[Rule, str]:
        """The rule and file name (or ``'N/A'``) best matching ``meta``."""
        reftype = reftype.lower()
        keys = PARKEYS.get(reftype, ())
        described = ", ".join(f"{k}={get_meta(meta, k)!s}" for k in keys) or "no parameters"
        if reftype not in self.rules:
            raise ReferenceSelectionError(f"context {self.name} has no rules for reference type {reftype}")
        candidates = []
        for rule in self.rules[reftype]:
            ok, exact = rule.matches(meta)
            if ok:
                candidates.append((exact, rule))
        if not candidates:
            raise ReferenceSelectionError(
                f"no {reftype} reference in context {self.name} matches {described}"
            )
        dated = []
        start = get_meta(meta, DATE_KEY)
        if start in (None, "", "?"):
            raise ReferenceSelectionError(
                f"cannot select a {reftype} reference: metadata has no {DATE_KEY} to compare with USEAFTER dates"
            )
        try:
            start_mjd = _mjd(start)
        except Exception:
            raise ReferenceSelectionError(
                f"cannot select a {reftype} reference: {DATE_KEY}={start!r} is not a date") from None
        for exact, rule in candidates:
            for date, filename in rule.useafter.items():
                when = _mjd(date)
                if when <= start_mjd:
                    dated.append((exact, when, filename, rule))
        if not dated:
            raise ReferenceSelectionError(
                f"no {reftype} reference in context {self.name} for {described} has a USEAFTER date on or "
                f"before {_time(start).isot}"
            )
        exact, _, filename, rule = max(dated, key=lambda item: (item[0], item[1]))
        return rule, filename

    def resolve(self, filename: str, build: bool = True) -> Path:
        """Path of a selected file; a store context produces a missing file when ``build``."""
        path = Path(filename)
        if not path.is_absolute():
            path = self.root / path
        if not path.exists():
            if build and self.provider is not None:
                return self.provider.materialize(path.name)
            if self.provider is None:
                raise ReferenceSelectionError(f"context {self.name} selects {path}, which does not exist")
        return path


def _as_context(context, science_size=None) -> Context:
    """A :class:`Context` from a Context, a store, a context-file path, or None (default store)."""
    from romanflow.refdata.store import ReferenceStore, default_store

    if context is None:
        return default_store(science_size=science_size).context
    if isinstance(context, Context):
        return context
    if isinstance(context, ReferenceStore):
        return context.context
    return Context.load(context)


def check_reference_file(path, reftype: str) -> Path:
    """Check that ``path`` exists and holds a ``reftype`` reference model; return it as a Path."""
    from romanflow.formats.reference_io import open_quietly

    path = Path(path)
    try:
        open_quietly(path, model_class_name(reftype)).close()
    except InputFileError as exc:
        raise InputFileError(path, f"cannot be used as the {reftype} reference: {exc.problem}") from None
    return path


def select_reference(reftype: str, meta: dict, context=None, overrides: dict | None = None,
                     *, science_size: int | None = None, build: bool = True) -> Path | None:
    """Best reference file of one type for an exposure.

    Parameters
    ----------
    reftype : str
        Reference type, e.g. ``'dark'`` (see :data:`PARKEYS`).
    meta : dict
        Exposure metadata (``instrument.detector``, ``instrument.optical_element``,
        ``exposure.type``, ``exposure.start_time`` …).
    context : Context, ReferenceStore, str or Path, optional
        Rules to use: a context file, a store, or the default embedded store.
    overrides : dict, optional
        reftype -> user file. An override always wins; it must exist and hold
        the right model type. ``'N/A'`` switches the type off.
    science_size : int, optional
        Science size of the default store (full detector if not given).
    build : bool
        Produce a missing file of a store on demand (default True).

    Returns
    -------
    Path or None
        The file, or None where the context says the type does not apply (N/A).
    """
    reftype = str(reftype).lower()
    if reftype not in PARKEYS:
        raise RomanflowError(f"unknown reference type {reftype!r}: expected one of {', '.join(REFERENCE_TYPES)}")
    if overrides and overrides.get(reftype) is not None:
        value = overrides[reftype]
        if _norm(value) == NOT_APPLICABLE:
            return None
        return check_reference_file(value, reftype)
    ctx = _as_context(context, science_size)
    _, filename = ctx.select_rule(reftype, meta)
    if _norm(filename) == NOT_APPLICABLE:
        return None
    return ctx.resolve(filename, build=build)


#: Short alias of :func:`select_reference`.
select = select_reference


def best_references(meta: dict, context=None, overrides: dict | None = None, *, reftypes=None,
                    science_size: int | None = None, build: bool = True) -> dict:
    """Best reference of every type the context knows (or of ``reftypes``): reftype -> Path or None."""
    ctx = _as_context(context, science_size)
    unknown = set(overrides or {}) - set(PARKEYS)
    if unknown:
        raise RomanflowError(f"unknown reference type(s) in overrides: {', '.join(sorted(unknown))}")
    wanted = reftypes if reftypes is not None else tuple(dict.fromkeys(ctx.reftypes + tuple(overrides or ())))
    return {
        reftype: select_reference(reftype, meta, ctx, overrides, build=build)
        for reftype in wanted
    }
