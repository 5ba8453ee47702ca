"""Face data for the zoo: ORL (embedded default), identity folders, insightface RecordIO and .bin
verification sets, LFW pairs, images with .pts landmarks, and the one face transform. See docs/data.md."""
from .transforms import FACE_MEAN, FACE_STD, face_transform  # noqa: F401
from .orl import ORLFaces, orl_identity_split, orl_root  # noqa: F401
from .folders import IdentityFolder  # noqa: F401
from .landmarks import LandmarkFolder  # noqa: F401
from .recordio import RecordIODataset, RecordIOWriter, pack_folder  # noqa: F401
from .verification import (ORLPairs, PairDataset, read_bin, read_bin_raw, read_lfw_pairs,  # noqa: F401
                           verification_pairs, write_bin)
