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
``meta.exposure.start_time``. Selection for an exposure, with user overrides
and the embedded store as the default context, is :mod:`romanflow.refdata.selection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from romanflow.errors import InputFileError, ReferenceSelectionError
from romanflow.exposure import get_meta

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
    "epsf": ("instrument.detector", "instrument.optical_element"),
    "matable": (),
    "darkdecaysignal": (),
}

#: Metadata giving the observation date compared with USEAFTER.
DATE_KEY = "exposure.start_time"
NOT_APPLICABLE = "N/A"


def _norm(value) -> str:
    return str(value).strip().upper()


def is_not_applicable(value) -> bool:
    """Whether a rule value or file name is ``N/A`` (any case, surrounding blanks ignored)."""
    return _norm(value) == NOT_APPLICABLE


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
