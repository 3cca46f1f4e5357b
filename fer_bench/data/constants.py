"""FER2013's vocabulary: class codes, class names and split names."""

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE

# Split codes stored in FerData.splits (uint8) index into this tuple.
SPLITS = ("train", "public_test", "private_test", "test")
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}

# The original file's Usage values.
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "public_test", "PrivateTest": "private_test"}

# FER2013's published sizes, used for the synthetic set's defaults (never to check a real file).
FER2013_SPLIT_SIZES = {"train": 28709, "public_test": 3589, "private_test": 3589}
FER2013_CLASS_COUNTS = {
    "angry": 4953, "disgust": 547, "fear": 5121, "happy": 8989, "sad": 6077, "surprise": 4002, "neutral": 6198,
}
