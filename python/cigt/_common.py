"""What cigt.format and cigt.points share, in one private module so that neither imports the
other's privates: the error type, JSON read and written with jansson's rules (as the C reader
and writer see it), C's conventions for values (float32 rounding, snprintf truncation) and the
name rule of src/common/name.c."""

import json
import math
import struct

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MODEL_NAME_LEN = 63  # src/common/name.h, CIGT__MODEL_NAME_LEN
POINT_NAME_LEN = 31  # CIGT__POINT_NAME_LEN


class FormatError(ValueError):
    """A model file or architecture that cigt refuses; str() is the one-line reason, worded as
    `cigt info` words it (without the leading 'cigt: PATH: ')."""


def _trunc(msg, size):
    """What C's snprintf into a buffer of `size` bytes keeps."""
    b = msg.encode()
    return b[: size - 1].decode(errors="ignore") if len(b) >= size else msg


# ------------------------------------------------------------------------------------- JSON
class _JSONError(ValueError):
    pass


def _pairs_no_dup(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise _JSONError("duplicate object key")
        d[k] = v
    return d


def _int(s):
    v = int(s)
    if v < INT64_MIN or v > INT64_MAX:
        raise _JSONError("too big integer")
    return v


def _float(s):
    v = float(s)
    if not math.isfinite(v):
        raise _JSONError("real number overflow")
    return v


def _bad_const(s):
    raise _JSONError("invalid token")


def _loads(text):
    """json.loads with jansson's rules: duplicate keys, NaN/Infinity, integers outside int64,
    overflowing reals and NUL characters are errors. Raises _JSONError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _JSONError("invalid UTF-8") from e
    try:
        v = json.loads(text, object_pairs_hook=_pairs_no_dup, parse_int=_int,
                       parse_float=_float, parse_constant=_bad_const)
    except _JSONError:
        raise
    except (ValueError, RecursionError) as e:
        raise _JSONError(str(e)) from e
    if "\x00" in text:
        raise _JSONError("\\u0000 is not allowed")
    if not isinstance(v, (dict, list)):  # jansson without JSON_DECODE_ANY
        raise _JSONError("'[' or '{' expected")
    return v


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def _is_obj(v):
    return isinstance(v, dict)


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def dumps_json(obj):
    """Compact JSON as cigt writes it (jansson JSON_COMPACT: no spaces, UTF-8 kept)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ------------------------------------------------------------------------------------ names
def _name_ok(s, size, dot_first):
    n = len(s.encode())
    if n == 0 or n > size or (not dot_first and s[0] == "."):
        return False
    return all(("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "_.-"
               for c in s)


def model_name_ok(s):
    """A model name (the architecture's name): 1..63 bytes of [A-Za-z0-9_.-]."""
    return _name_ok(s, MODEL_NAME_LEN, True)


def model_file_name_ok(s):
    """A model name that is looked for on disk (a second model): also not starting with '.'."""
    return _name_ok(s, MODEL_NAME_LEN, False)


def point_name_ok(s):
    """An operating point's name: 1..31 bytes of [A-Za-z0-9_.-], not starting with '.'."""
    return _name_ok(s, POINT_NAME_LEN, False)
