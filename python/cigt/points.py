"""Operating points (proto/model-format.md section 6): the table of named compute settings that
`cigt tune` keeps as JSON text in a model file's __metadata__.operating_points. parse() validates
it as the C reader does (src/model/points.c, cigt_points_parse: same rules, same order, same
one-line reasons); to_json() writes it as cigt writes it (cigt_points_to_json), so a table read
and written back is the same text. Values are kept as C keeps them: thresholds and confidence
rounded to float32, accuracy and MACs as doubles."""

import dataclasses
import math

from ._common import (POINT_NAME_LEN, MODEL_NAME_LEN, FormatError, _JSONError, _f32, _is_num,
                      _loads, _trunc, dumps_json, model_file_name_ok, point_name_ok)

MAX_POINTS = 32
POINT_NAME_MAX = POINT_NAME_LEN + 1  # bytes with the terminating NUL, as C counts them
SECOND_NAME_MAX = MODEL_NAME_LEN + 1
KEYS = ("name", "thresholds", "confidence", "second", "second_sha256", "val_accuracy",
        "mean_macs")


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """One point: thresholds (one per router, float32 values in [0, 1]), confidence (float32 in
    [0, 1]; above 0 escalates to the second model), second / second_sha256 (the second model's
    name and the sha256 of <second>.safetensors, or None), val_accuracy in [0, 1], mean_macs
    in (0, 1e18]."""
    name: str
    thresholds: tuple
    val_accuracy: float
    mean_macs: float
    confidence: float = 0.0
    second: str = None
    second_sha256: str = None


def _good_hex(s):
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def _get_number(o, key, i, lo, hi, lo_open):
    if key not in o:
        raise FormatError("operating_points[%d].%s is missing" % (i, key))
    v = o[key]
    if not _is_num(v):
        raise FormatError("operating_points[%d].%s is not a number" % (i, key))
    x = float(v)
    if not math.isfinite(x) or x < lo or x > hi or (lo_open and x == lo):
        raise FormatError("operating_points[%d].%s is %g, not in %s%g, %g]"
                          % (i, key, x, "(" if lo_open else "[", lo, hi))
    return x


def _parse(text, nrouters):
    try:
        root = _loads(text)
    except _JSONError as e:
        raise FormatError("operating_points is not valid JSON: %s" % e) from None
    if not isinstance(root, list):
        raise FormatError("operating_points is not a JSON array")
    if len(root) > MAX_POINTS:
        raise FormatError("operating_points has %d points, more than %d" % (len(root),
                                                                            MAX_POINTS))
    points = []
    for i, o in enumerate(root):
        if not isinstance(o, dict):
            raise FormatError("operating_points[%d] is not an object" % i)
        for k in o:
            if k not in KEYS:
                raise FormatError("operating_points[%d]: unknown key '%s'" % (i, k))
        name = o.get("name")
        if not isinstance(name, str) or not point_name_ok(name):
            raise FormatError("operating_points[%d].name must be 1-%d characters of "
                              "[A-Za-z0-9_.-], not starting with '.'" % (i, POINT_NAME_MAX - 1))
        if any(p.name == name for p in points):
            raise FormatError("operating_points[%d].name '%s' is used twice" % (i, name))
        t = o.get("thresholds")
        if not isinstance(t, list) or len(t) != nrouters:
            raise FormatError("operating_points[%d].thresholds must be an array of %d numbers "
                              "(one per router)" % (i, nrouters))
        tau = []
        for l, x in enumerate(t):
            if not (_is_num(x) and 0.0 <= float(x) <= 1.0):
                raise FormatError("operating_points[%d].thresholds[%d] is not a number in "
                                  "[0, 1]" % (i, l))
            tau.append(_f32(float(x)))
        conf = 0.0
        if "confidence" in o:
            conf = _f32(_get_number(o, "confidence", i, 0.0, 1.0, False))
        second = sha = None
        if "second" in o or "second_sha256" in o or conf > 0.0:
            sn, sh = o.get("second"), o.get("second_sha256")
            if not isinstance(sn, str) or not model_file_name_ok(sn):
                raise FormatError("operating_points[%d].second must name the second model "
                                  "(1-%d characters of [A-Za-z0-9_.-])" % (i,
                                                                          SECOND_NAME_MAX - 1))
            if not isinstance(sh, str) or not _good_hex(sh):
                raise FormatError("operating_points[%d].second_sha256 must be 64 lowercase "
                                  "hex digits" % i)
            if not conf > 0.0:
                raise FormatError("operating_points[%d] names a second model but its "
                                  "confidence is not above 0" % i)
            second, sha = sn, sh
        acc = _get_number(o, "val_accuracy", i, 0.0, 1.0, False)
        macs = _get_number(o, "mean_macs", i, 0.0, 1e18, True)
        points.append(OperatingPoint(name, tuple(tau), acc, macs, conf, second, sha))
    return points


def parse(text, arch):
    """The operating points of the JSON text (str or bytes) for the resolved architecture arch
    (cigt.format.parse_arch): a list of OperatingPoint, or FormatError with the C reader's
    reason without its '__metadata__.' prefix (e.g. "operating_points[2].name 'single' is used
    twice"). The wording after 'operating_points is not valid JSON: ' is Python's parser's."""
    try:
        return _parse(text, len(arch["layers"]) - 1)
    except FormatError as e:
        raise FormatError(_trunc(str(e), 200)) from None


def _jreal(x):
    """A double as jansson dumps it with JSON_REAL_PRECISION(12)."""
    s = "%.12g" % x
    if "." not in s and "e" not in s:
        s += ".0"
    if "e" in s:
        mant, exp = s.split("e")
        sign = "-" if exp.startswith("-") else ""
        s = "%se%s%s" % (mant, sign, exp.lstrip("+-").lstrip("0") or "0")
    return s


def _shortest_f32(v):
    """The shortest decimal that reads back as the float32 v, as a double (C's float_json)."""
    for prec in range(1, 10):
        s = "%.*g" % (prec, v)
        if _f32(float(s)) == v:
            break
    return float(s)


def _as_dict(p):
    """A point as the file's JSON object (dicts are taken as they are)."""
    if isinstance(p, dict):
        return p
    if not isinstance(p, OperatingPoint):
        raise TypeError("operating points are OperatingPoint objects or dicts, not %s"
                        % type(p).__name__)
    o = {"name": p.name, "thresholds": [float(t) for t in p.thresholds]}
    if p.confidence or p.second is not None or p.second_sha256 is not None:
        o["confidence"] = float(p.confidence)
        if p.second is not None:
            o["second"] = p.second
        if p.second_sha256 is not None:
            o["second_sha256"] = p.second_sha256
    o["val_accuracy"], o["mean_macs"] = float(p.val_accuracy), float(p.mean_macs)
    return o


def to_json(points, arch):
    """The JSON text cigt writes for points (a list of OperatingPoint, or of dicts with the
    file's keys), after validating them as parse() does: keys in file order, thresholds and
    confidence as the shortest decimal of their float32, confidence/second/second_sha256 only
    for a point with a second model. Raises FormatError (the reason parse() gives)."""
    try:
        text = dumps_json([_as_dict(p) for p in points])
    except (TypeError, ValueError) as e:
        raise FormatError("operating_points: %s" % e) from None
    parsed = parse(text, arch)
    out = []
    for p in parsed:
        f = ['"name":%s' % dumps_json(p.name),
             '"thresholds":[%s]' % ",".join(_jreal(_shortest_f32(t)) for t in p.thresholds)]
        if p.second is not None:
            f += ['"confidence":%s' % _jreal(_shortest_f32(p.confidence)),
                  '"second":%s' % dumps_json(p.second),
                  '"second_sha256":%s' % dumps_json(p.second_sha256)]
        f += ['"val_accuracy":%s' % _jreal(p.val_accuracy), '"mean_macs":%s' % _jreal(p.mean_macs)]
        out.append("{" + ",".join(f) + "}")
    return "[" + ",".join(out) + "]"
