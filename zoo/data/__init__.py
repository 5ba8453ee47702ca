"""Face data for the zoo: ORL (embedded default), identity folders, insightface RecordIO and .bin
verification sets, LFW pairs, images with .pts landmarks, and the one face transform.
See docs/data.md."""
from .folders import IdentityFolder
from .insightface_bin import read_bin, read_bin_raw, write_bin
from .landmarks import LandmarkFolder
from .orl import ORLFaces, orl_identity_split, orl_root
from .recordio import RecordIODataset, RecordIOWriter, pack_folder
from .transforms import FACE_MEAN, FACE_STD, face_transform
from .verification import ORLPairs, PairDataset, read_lfw_pairs, verification_pairs
