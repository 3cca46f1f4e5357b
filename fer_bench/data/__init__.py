"""FER data: every FER2013 copy in circulation, a synthetic set, and one DataLoader policy."""

from fer_bench.data.constants import CLASS_NAMES, NUM_CLASSES, SPLITS
from fer_bench.data.ferdata import FerData

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "SPLITS", "FerData"]
