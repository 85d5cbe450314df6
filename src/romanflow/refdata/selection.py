"""Best-reference selection for an exposure: overrides first, then a context's rules.

The rules come from a context file, a :class:`~romanflow.refdata.store.ReferenceStore`
or, by default, the embedded store of the requested science size.
"""

from __future__ import annotations

from pathlib import Path

from romanflow.errors import InputFileError, RomanflowError
from romanflow.formats.reference_io import REFERENCE_TYPES, model_class_name
from romanflow.refdata.context import PARKEYS, Context, is_not_applicable
from romanflow.refdata.store import ReferenceStore, default_store


def as_context(context, science_size=None) -> Context:
    """A :class:`Context` from a Context, a store, a context-file path, or None (default store)."""
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
        Reference type, e.g. ``'dark'`` (see :data:`~romanflow.refdata.context.PARKEYS`).
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
        if is_not_applicable(value):
            return None
        return check_reference_file(value, reftype)
    ctx = as_context(context, science_size)
    _, filename = ctx.select_rule(reftype, meta)
    if is_not_applicable(filename):
        return None
    return ctx.resolve(filename, build=build)


#: Short alias of :func:`select_reference`.
select = select_reference


def best_references(meta: dict, context=None, overrides: dict | None = None, *, reftypes=None,
                    science_size: int | None = None, build: bool = True) -> dict:
    """Best reference of every calibration type the context knows (or of ``reftypes``): reftype -> Path or None.

    Analysis references (``epsf`` PSF libraries) are included only through ``reftypes`` or ``overrides``.
    """
    ctx = as_context(context, science_size)
    unknown = set(overrides or {}) - set(PARKEYS)
    if unknown:
        raise RomanflowError(f"unknown reference type(s) in overrides: {', '.join(sorted(unknown))}")
    if reftypes is None:  # the calibration's types; analysis references (PSF libraries) only when asked for
        from romanflow.refdata.synthesize import PLUGIN_TYPES

        known = tuple(t for t in ctx.reftypes if t not in PLUGIN_TYPES)
        wanted = tuple(dict.fromkeys(known + tuple(overrides or ())))
    else:
        wanted = reftypes
    return {
        reftype: select_reference(reftype, meta, ctx, overrides, build=build)
        for reftype in wanted
    }
