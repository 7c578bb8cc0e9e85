"""Example recipes and data, shipped in the wheel so ``thresher demo`` runs from any folder."""
