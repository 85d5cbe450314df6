"""ADQL for the archive's databases.

SQLite (the embedded default): the query is tokenised, ``TOP n`` becomes ``LIMIT n``, ADQL table names
(``ivoa.obscore``, ``TAP_SCHEMA.columns``) become the names of the views the TAP connection defines,
and the geometry functions ``POINT``, ``CIRCLE``, ``POLYGON``, ``BOX``, ``CONTAINS``, ``INTERSECTS``,
``DISTANCE``, ``COORD1``, ``COORD2``, ``AREA`` and the ADQL math functions are SQL functions
registered on the connection (:func:`register_functions`), computed with the archive's spherical
geometry (great-circle polygons, as STC-S and pgSphere).

PostgreSQL: ``queryparser-python3`` translates ADQL to PostgreSQL with pgSphere operators.
"""

from __future__ import annotations

import math
import re

import numpy as np

from romanflow.errors import RomanflowError


class ADQLError(RomanflowError):
    """The query is not ADQL this service runs."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")+")
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><>|<=|>=|!=|\|\||[-+*/%=<>(),.;])
""", re.VERBOSE)


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; ADQLError on a character ADQL does not use or an unclosed quote."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ADQLError(f"ADQL syntax error near {text[pos:pos + 20]!r} (character {pos + 1})")
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _ident_value(tok) -> str | None:
    kind, text = tok
    if kind == "ident":
        return text.lower()
    if kind == "qident":
        return text[1:-1].replace('""', '"').lower()
    return None


def statement_tokens(query: str) -> list[tuple[str, str]]:
    """Tokens of one SELECT statement (a trailing ``;`` dropped); ADQLError for anything else."""
    tokens = tokenize(query)
    while tokens and tokens[-1] == ("op", ";"):
        tokens.pop()
    if not tokens:
        raise ADQLError("the query is empty")
    if any(t == ("op", ";") for t in tokens):
        raise ADQLError("one statement per query")
    first = tokens[0][1].upper()
    if tokens[0][0] != "ident" or first not in ("SELECT", "WITH"):
        raise ADQLError(f"ADQL queries start with SELECT (found {tokens[0][1]!r})")
    return tokens


def to_sqlite(query: str, table_map: dict[str, str]) -> str:
    """SQLite text of an ADQL ``query``; ``table_map``: lower-case ``schema.table`` -> SQLite name."""
    tokens = statement_tokens(query)
    # table names: schema . table [. column]
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        a = _ident_value(tokens[i])
        if a is not None and i + 2 < len(tokens) and tokens[i + 1] == ("op", ".") and _ident_value(tokens[i + 2]):
            key = f"{a}.{_ident_value(tokens[i + 2])}"
            if key in table_map:
                out.append(("ident", table_map[key]))
                i += 3
                continue
        out.append(tokens[i])
        i += 1
    tokens = out
    # TOP n and OFFSET m of the outermost SELECT -> LIMIT n OFFSET m
    depth, top, offset = 0, None, None
    result = []
    i = 0
    seen_select = False
    while i < len(tokens):
        kind, text = tokens[i]
        up = text.upper() if kind == "ident" else text
        if kind == "op" and text == "(":
            depth += 1
        elif kind == "op" and text == ")":
            depth -= 1
            if depth < 0:
                raise ADQLError("unbalanced parentheses")
        if depth == 0 and kind == "ident" and up == "SELECT" and not seen_select:
            seen_select = True
            result.append(tokens[i])
            j = i + 1
            if j < len(tokens) and tokens[j][0] == "ident" and tokens[j][1].upper() in ("ALL", "DISTINCT"):
                result.append(tokens[j])
                j += 1
            if j + 1 < len(tokens) and tokens[j][0] == "ident" and tokens[j][1].upper() == "TOP":
                if tokens[j + 1][0] != "number" or not tokens[j + 1][1].isdigit():
                    raise ADQLError("TOP takes a non-negative integer")
                top = int(tokens[j + 1][1])
                j += 2
            i = j
            continue
        if depth == 0 and kind == "ident" and up == "OFFSET" and i + 1 < len(tokens):
            if tokens[i + 1][0] != "number" or not tokens[i + 1][1].isdigit():
                raise ADQLError("OFFSET takes a non-negative integer")
            offset = int(tokens[i + 1][1])
            i += 2
            continue
        if kind == "ident" and up == "LIMIT":
            raise ADQLError("LIMIT is not ADQL: use SELECT TOP n")
        result.append(tokens[i])
        i += 1
    if depth != 0:
        raise ADQLError("unbalanced parentheses")
    text = " ".join(t for _, t in result)
    text = text.replace(" . ", ".").replace("( ", "(").replace(" )", ")")
    if top is not None or offset is not None:
        text += f" LIMIT {top if top is not None else -1}"
        if offset is not None:
            text += f" OFFSET {offset}"
    return text


def to_postgresql(query: str) -> str:
    """PostgreSQL (pgSphere) text of an ADQL query, by queryparser-python3."""
    from queryparser.adql import ADQLQueryTranslator
    from queryparser.exceptions import QueryError, QuerySyntaxError

    statement_tokens(query)
    try:
        return ADQLQueryTranslator(query).to_postgresql()
    except QuerySyntaxError as exc:
        where = ", ".join(f"line {e[0]} column {e[1]} near {e[2]!r}" for e in (exc.syntax_errors or [])[:3]) \
            if hasattr(exc, "syntax_errors") else str(exc)
        raise ADQLError(f"ADQL syntax error: {where}") from None
    except (QueryError, Exception) as exc:  # noqa: BLE001 - the translator's other failures are the query's
        raise ADQLError(f"the query cannot be translated: {type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------------- geometry values
# A geometry travels between SQL functions as text: "POINT ra dec", "CIRCLE ra dec r",
# "POLYGON ra1 dec1 ..." (the STC-S form of s_region is accepted too).

def _fmt(kind: str, values) -> str:
    return kind + " " + " ".join(repr(float(v)) for v in values)


def _geom(value):
    """(kind, numbers) of a geometry text; None for NULL."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    parts = str(value).split()
    if not parts:
        return None
    kind = parts[0].upper()
    nums = []
    for p in parts[1:]:
        try:
            nums.append(float(p))
        except ValueError:
            continue  # a frame name (ICRS)
    if kind == "POINT" and len(nums) == 2:
        return kind, nums
    if kind == "CIRCLE" and len(nums) == 3:
        return kind, nums
    if kind == "POLYGON" and len(nums) >= 6 and len(nums) % 2 == 0:
        return kind, nums
    raise ADQLError(f"not a geometry: {str(value)[:60]!r}")


def _frame_args(args, n):
    """The numbers of a geometry constructor, with or without the ADQL coordinate-system string first."""
    args = list(args)
    if args and (args[0] is None or isinstance(args[0], str)) and len(args) in (n + 1,) + ((n + 1,) if n else ()):
        args = args[1:]
    elif args and isinstance(args[0], str):
        args = args[1:]
    if any(a is None for a in args):
        return None
    try:
        return [float(a) for a in args]
    except (TypeError, ValueError):
        raise ADQLError("geometry arguments must be numbers") from None


def f_point(*args):
    v = _frame_args(args, 2)
    if v is None:
        return None
    if len(v) != 2:
        raise ADQLError("POINT takes (coordsys, ra, dec)")
    return _fmt("POINT", v)


def f_circle(*args):
    if len(args) in (2, 3) and isinstance(args[-2], str) and args[-2].upper().startswith("POINT"):
        p = _geom(args[-2])
        return _fmt("CIRCLE", p[1] + [float(args[-1])])
    v = _frame_args(args, 3)
    if v is None:
        return None
    if len(v) != 3:
        raise ADQLError("CIRCLE takes (coordsys, ra, dec, radius)")
    return _fmt("CIRCLE", v)


def f_polygon(*args):
    v = _frame_args(args, 0)
    if v is None:
        return None
    if len(v) < 6 or len(v) % 2:
        raise ADQLError("POLYGON takes (coordsys, ra1, dec1, ra2, dec2, ra3, dec3, ...)")
    return _fmt("POLYGON", v)


def f_box(*args):
    v = _frame_args(args, 4)
    if v is None:
        return None
    if len(v) != 4:
        raise ADQLError("BOX takes (coordsys, ra, dec, width, height)")
    ra, dec, w, h = v
    half_w = w / 2.0 / max(math.cos(math.radians(dec)), 1e-6)
    return _fmt("POLYGON", [ra - half_w, dec - h / 2, ra + half_w, dec - h / 2, ra + half_w, dec + h / 2,
                            ra - half_w, dec + h / 2])


def _vectors(nums):
    from romanflow.archive.sphere import xyz

    return xyz(np.array(nums[0::2]), np.array(nums[1::2]))


def _point_in(p, region) -> bool:
    from romanflow.archive.sphere import polygons_contain, separation

    kind, v = region
    if kind == "CIRCLE":
        return bool(separation(p[0], p[1], v[0], v[1]) <= v[2])
    if kind == "POLYGON":
        from romanflow.archive.sphere import xyz

        return bool(polygons_contain(_vectors(v)[None], xyz(p[0], p[1]))[0])
    if kind == "POINT":
        return bool(separation(p[0], p[1], v[0], v[1]) <= 1e-12)
    return False


def f_contains(a, b):
    """1 when geometry a lies inside b (a POINT in a CIRCLE or POLYGON; a CIRCLE or POLYGON by its outline)."""
    ga, gb = _geom(a), _geom(b)
    if ga is None or gb is None:
        return None
    if ga[0] == "POINT":
        return int(_point_in(ga[1], gb))
    if ga[0] == "POLYGON":
        v = ga[1]
        return int(all(_point_in((v[k], v[k + 1]), gb) for k in range(0, len(v), 2)))
    if ga[0] == "CIRCLE":
        from romanflow.services.cutout import _offset

        ra, dec = _offset(ga[1][0], ga[1][1], ga[1][2], np.linspace(0, 2 * np.pi, 36, endpoint=False))
        return int(all(_point_in((r, d), gb) for r, d in zip(ra, dec)))
    return 0


def f_intersects(a, b):
    """1 when the two geometries meet."""
    from romanflow.archive.sphere import cone_overlaps, polygon_overlaps, separation

    ga, gb = _geom(a), _geom(b)
    if ga is None or gb is None:
        return None
    if ga[0] == "POINT":
        return int(_point_in(ga[1], gb))
    if gb[0] == "POINT":
        return int(_point_in(gb[1], ga))
    if ga[0] == "CIRCLE" and gb[0] == "CIRCLE":
        return int(separation(ga[1][0], ga[1][1], gb[1][0], gb[1][1]) <= ga[1][2] + gb[1][2])
    if ga[0] == "CIRCLE":
        ga, gb = gb, ga
    if gb[0] == "CIRCLE":
        return int(cone_overlaps(_vectors(ga[1])[None], gb[1][0], gb[1][1], gb[1][2])[0])
    return int(polygon_overlaps(_vectors(ga[1])[None], _vectors(gb[1]))[0])


def f_distance(*args):
    from romanflow.archive.sphere import separation

    if len(args) == 2:
        ga, gb = _geom(args[0]), _geom(args[1])
        if ga is None or gb is None:
            return None
        if ga[0] != "POINT" or gb[0] != "POINT":
            raise ADQLError("DISTANCE takes two POINTs")
        return float(separation(ga[1][0], ga[1][1], gb[1][0], gb[1][1]))
    if len(args) == 4:
        if any(a is None for a in args):
            return None
        return float(separation(*[float(a) for a in args]))
    raise ADQLError("DISTANCE takes two POINTs or four numbers")


def f_coord(index):
    def coord(a):
        g = _geom(a)
        if g is None:
            return None
        if g[0] != "POINT":
            raise ADQLError(f"COORD{index + 1} takes a POINT")
        return g[1][index]

    return coord


def f_area(a):
    """Area (deg^2) of a CIRCLE or POLYGON (spherical excess)."""
    g = _geom(a)
    if g is None:
        return None
    if g[0] == "CIRCLE":
        r = math.radians(g[1][2])
        return 2 * math.pi * (1 - math.cos(r)) * (180 / math.pi) ** 2
    if g[0] == "POLYGON":
        v = _vectors(g[1])
        n = len(v)
        total = 0.0
        for k in range(n):
            a_, b_, c_ = v[k - 1], v[k], v[(k + 1) % n]
            t1 = np.cross(b_, a_)
            t2 = np.cross(b_, c_)
            ang = math.atan2(np.dot(np.cross(t1, t2), b_), np.dot(t1, t2))
            total += ang % (2 * math.pi)
        excess = abs(total - (n - 2) * math.pi)
        excess = min(excess, 4 * math.pi - excess)
        return excess * (180 / math.pi) ** 2
    return 0.0


def _safe(fn):
    def wrapped(*args):
        try:
            return fn(*args)
        except ADQLError:
            raise
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            return None

    return wrapped


def _num(fn):
    def wrapped(*args):
        if any(a is None for a in args):
            return None
        try:
            return fn(*[float(a) for a in args])
        except (ValueError, OverflowError, ZeroDivisionError, TypeError):
            return None

    return wrapped


def _truncate(x, n=0):
    f = 10.0 ** int(n)
    return math.trunc(x * f) / f


def _round(x, n=0):
    f = 10.0 ** int(n)
    return math.floor(x * f + 0.5) / f if x >= 0 else -math.floor(-x * f + 0.5) / f


SQL_FUNCTIONS = {
    "POINT": (-1, f_point), "CIRCLE": (-1, f_circle), "POLYGON": (-1, f_polygon), "BOX": (-1, f_box),
    "CONTAINS": (2, f_contains), "INTERSECTS": (2, f_intersects), "DISTANCE": (-1, f_distance),
    "COORD1": (1, f_coord(0)), "COORD2": (1, f_coord(1)), "AREA": (1, f_area),
    "COORDSYS": (1, lambda a: None if a is None else "ICRS"),
    "ABS": (1, _num(abs)), "CEILING": (1, _num(lambda x: float(math.ceil(x)))),
    "FLOOR": (1, _num(lambda x: float(math.floor(x)))), "DEGREES": (1, _num(math.degrees)),
    "RADIANS": (1, _num(math.radians)), "EXP": (1, _num(math.exp)), "LOG": (1, _num(math.log)),
    "LOG10": (1, _num(math.log10)), "MOD": (2, _num(math.fmod)), "PI": (0, lambda: math.pi),
    "POWER": (2, _num(math.pow)), "SQRT": (1, _num(math.sqrt)), "SIN": (1, _num(math.sin)),
    "COS": (1, _num(math.cos)), "TAN": (1, _num(math.tan)), "COT": (1, _num(lambda x: 1.0 / math.tan(x))),
    "ASIN": (1, _num(math.asin)), "ACOS": (1, _num(math.acos)), "ATAN": (1, _num(math.atan)),
    "ATAN2": (2, _num(math.atan2)), "TRUNCATE": (-1, _num(_truncate)), "RAND": (-1, lambda *a: float(np.random.random())),
}


def register_functions(connection) -> None:
    """Register the ADQL functions on a sqlite3 connection."""
    for name, (nargs, fn) in SQL_FUNCTIONS.items():
        connection.create_function(name, nargs, _safe(fn) if name in ("POINT", "CIRCLE", "POLYGON", "BOX")
                                   else fn, deterministic=name != "RAND")
    connection.create_function("ROUND", -1, _num(_round), deterministic=True)
