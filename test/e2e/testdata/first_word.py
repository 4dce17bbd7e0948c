"""Task metrics for the end-to-end test of the task evaluation."""


def score(output, reference):
    """1 when the answer opens with the reference's first word (the support bot's
    format: "To cancel...", "Sorry about..."), else 0."""
    out, ref = output.split(), reference.split()
    return float(bool(out) and bool(ref) and out[0] == ref[0])


def fragile(output, reference):
    """A scorer that raises on some examples: their score must be an error, never 0."""
    if "Tornado" in reference:
        raise ValueError("cannot score Tornado answers")
    return 1.0
