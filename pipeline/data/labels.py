"""Beat labels: AAMI EC57 classes from MIT-BIH annotation symbols, and PTB-XL superclasses.

AAMI EC57 (see shared REFERENCES.md): N = N L R e j; S = A a J S; V = V E; F = F; Q = / f Q.
The beat symbols ``B`` (bundle branch block, unspecified), ``n`` (supraventricular escape),
``r`` (R-on-T premature ventricular) and ``?`` (unclassifiable) do not occur in mitdb; when
they appear they are mapped to N, S, V and Q as in later AAMI practice. Every other
annotation symbol of the WFDB standard is a non-beat annotation and is never a beat.
"""

from __future__ import annotations

AAMI5_CLASSES = ("N", "S", "V", "F", "Q")
AAMI4_CLASSES = ("N", "SVEB", "VEB", "Other")
PTBXL_SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")

SYMBOL_TO_AAMI5 = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
    # Not in mitdb; mapped as in later AAMI practice.
    "B": "N",
    "n": "S",
    "r": "V",
    "?": "Q",
}
BEAT_SYMBOLS = frozenset(SYMBOL_TO_AAMI5)

# Non-beat annotation symbols of the WFDB standard (ecgcodes): never beats.
NON_BEAT_SYMBOLS = frozenset(
    ["[", "!", "]", "x", "(", ")", "p", "t", "u", "`", "'", "^", "|", "~", "+", "s", "T", "*",
     "D", "=", '"', "@"]
)

AAMI5_TO_AAMI4 = {"N": "N", "S": "SVEB", "V": "VEB", "F": "Other", "Q": "Other"}

LABEL_SCHEMES = {"aami5": AAMI5_CLASSES, "aami4": AAMI4_CLASSES}


def class_names(scheme: str) -> tuple[str, ...]:
    try:
        return LABEL_SCHEMES[scheme]
    except KeyError:
        raise ValueError(
            f"unknown label scheme {scheme!r}; known: {sorted(LABEL_SCHEMES)}"
        ) from None


def symbol_class(symbol: str, scheme: str = "aami5") -> str | None:
    """AAMI class name of a beat symbol, or ``None`` for a non-beat annotation.

    Raises:
        ValueError: the symbol is neither a beat nor a known non-beat annotation, or the
            scheme is unknown.
    """
    class_names(scheme)  # an unknown scheme must not fall through to aami4
    if symbol in SYMBOL_TO_AAMI5:
        c5 = SYMBOL_TO_AAMI5[symbol]
        return c5 if scheme == "aami5" else AAMI5_TO_AAMI4[c5]
    if symbol in NON_BEAT_SYMBOLS:
        return None
    raise ValueError(f"unknown annotation symbol {symbol!r}")
