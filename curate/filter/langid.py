"""Language identification by a fastText model, for ``thresher filter --lid-model``.

The filter's default is Unicode script ratios
(``thresher.curate.text.scripts.script_language``): no model, and exact for
"is this Chinese, English, or something else?". Telling English from French
needs a trained model: pass fastText's ``lid.176.bin``/``.ftz`` (or any
fastText model with ``__label__xx`` labels) as ``--lid-model``.
"""

from __future__ import annotations

from pathlib import Path

from thresher.curate.errors import ThresherError


class FastTextLanguageId:
    """A fastText language-ID model (``__label__en`` style labels), e.g. ``lid.176.ftz``."""

    def __init__(self, path: str | Path) -> None:
        self.model = load_fasttext(path, "--lid-model")

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(language, confidence) for each text."""
        lines = [" ".join(t.split()) for t in texts]
        labels, probs = self.model.predict(lines, k=1)
        return [(label[0].removeprefix("__label__"), round(float(prob[0]), 4)) for label, prob in zip(labels, probs)]


def load_fasttext(path: str | Path, flag: str):
    """Load a fastText model file, turning fastText's failures into a clear error."""
    import fasttext

    fasttext.FastText.eprint = lambda *_: None  # silence the load_model deprecation notice
    if not Path(path).is_file():
        raise ThresherError(f"{flag} {path}: no such model file")
    try:
        return fasttext.load_model(str(path))
    except ValueError as exc:
        raise ThresherError(f"{flag} {path}: not a fastText model ({exc})") from None
