"""Named constants of SA-HMR (CVPR 2023), in one place.

Units are metres and pixels. Frames:

* camera optical frame (OpenCV / ROS ``*_optical_frame``): x right, y down, z forward;
* map frame (REP-103): the pre-scanned scene's world frame, z up.

Values are those of the paper and the official code (zju3dv/SA-HMR @ c57d244);
the comment on each says what it means there.
"""

from __future__ import annotations

# --- image crop (official `squared_crop_and_resize`) ---------------------------------------------
CROP_SIZE_PX = 224  # side of the square network input
CROP_SCALE = 1.15  # crop half size = max(w, h) / 2 * CROP_SCALE at test time
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Largest image (width x height, from the header, checked before decoding) any input may be: 8K video
# (7680 x 4320 = 33.2 MP, DCI 8192 x 4320 = 35.4 MP) fits. A 140 kB PNG can claim 12000 x 12000
# zeros, which would take 2 GB and seconds to decode and undistort.
MAX_IMAGE_PIXELS = 40_000_000

# --- scene and frustum ------------------------------------------------------------------------------
SCENE_PITCH_M = 0.02  # the pre-scanned scene is voxelised at 2 cm
FRUSTUM_NEAR_M = 0.5  # crop box unprojected between these depths (camera z)
FRUSTUM_FAR_M = 12.5

# --- RCNet: root and contact ----------------------------------------------------------------------
HEATMAP_SIZE = 56  # root_net output resolution (stride 4 of the 224 crop)
ROOT_NET_CHANNELS = 41  # pelvis heatmap (1) + depth (1) + feature map (32) + aux part heatmaps (7)
ROOT_NET_PELVIS_CHANNEL = 0
ROOT_NET_DEPTH_CHANNEL = 1
ROOT_NET_FEATURE_CHANNELS = slice(2, 34)  # 32-d map sampled at voxel centres
ROOT_NET_AUX_CHANNELS = slice(34, 41)  # 7 auxiliary 2D part-contact heatmaps (training only)
ROOT_FEATURE_DIM = 32
# Initial bias of the depth channel (its weights start at 0): the training target
# d = Z * w_bbox / f_x is about CROP_SCALE x the person's height in metres for an upright person
# filling the box, whatever the distance. A fresh network thus starts with plausible depths.
ROOT_DEPTH_PRIOR = CROP_SCALE * 1.7
ROI_ANCHOR_SPACING_M = 0.5  # anchors at -0.5, 0, +0.5 m along camera z around the coarse root
ROI_RADIUS_M = 1.25  # scene points kept within this distance of any anchor
CONTACT_VOXEL_M = 0.05  # voxel size of the sparse 3D CNN
CONTACT_NET_IN_DIM = 3 + ROOT_FEATURE_DIM  # (anchor - voxel centre) ++ sampled image feature
CONTACT_NET_OUT_DIM = 12  # confidence (1) + offset xyz (3) + contact logits (8)
NUM_CONTACT_POINTS = 500  # contact points handed to the mesh network (padded / subsampled)

# Contact labels: 0 none, 1..7 body parts (official seg_part_info 'predefined_segparts').
CONTACT_PART_NAMES = (
    "none",
    "left_foot",
    "right_foot",
    "left_hand",
    "right_hand",
    "back",
    "gluteus",
    "thighs",
)
NUM_CONTACT_CLASSES = len(CONTACT_PART_NAMES)
# Left/right mirror of the 7 parts (labels 1..7 -> index 0..6), for flip augmentation.
CONTACT_PART_FLIP = (1, 0, 3, 2, 4, 5, 6)
# Display colours per label (RGB, 0..255); label 0 is grey.
CONTACT_PART_COLORS = (
    (128, 128, 128),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
)

# --- per-person quality flags (PersonResult.flags, HumanMesh.flags) -------------------------------
FLAG_NO_SCENE_POINTS = "no_scene_points"  # root from the image alone, no contacts
FLAG_NON_FINITE = "non_finite_output"  # NaN/inf in the estimate (broken weights): do not use it

# --- time ------------------------------------------------------------------------------------------
NS_PER_S = 1_000_000_000  # ROS stamps are integer nanoseconds
# A message more than this far behind the newest one of its stream (or a transform sample behind the
# newest of its edge) means time jumped back: a bag replayed with --loop, a sim-time reset, or the
# recovery after a clock glitch stamped messages in the future. The synchroniser and the transform
# history then start over, as tf2 does on a time jump.
TIME_JUMP_BACK_S = 1.0

# --- coordinate range --------------------------------------------------------------------------------
# Coordinates (scene points, transform translations) farther than this from the map origin are refused:
# the scene is stored in float32, whose resolution at 1e5 m (8 mm) is still below the 2 cm scene pitch,
# and squared distances stay far inside float64's range. Re-centre a map kept in UTM coordinates.
MAX_COORDINATE_M = 1.0e5

# --- body model -------------------------------------------------------------------------------------
NUM_VERTICES = 6890  # SMPL topology
NUM_FACES = 13776
NUM_VERTICES_MID = 1723  # mesh_downsampling level 1
NUM_VERTICES_COARSE = 431  # mesh_downsampling level 2
NUM_SMPL_JOINTS = 24
NUM_H36M_JOINTS = 17
H36M_PELVIS = 0  # row of J_regressor_h36m_correct that defines the root
H36M_J17_TO_J14 = (3, 2, 1, 4, 5, 6, 16, 15, 14, 11, 12, 13, 8, 10)
NUM_JOINTS14 = len(H36M_J17_TO_J14)
JOINT14_NAMES = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
                 "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "thorax", "head")
NUM_MESH_TOKENS = NUM_JOINTS14 + NUM_VERTICES_COARSE  # 445

# --- body model files and conventions (sahmr_ros.body) -------------------------------------------
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_BETAS = 10  # shape coefficients of the SMPL v1.0 files
NUM_POSE_BASIS = 9 * (NUM_SMPL_JOINTS - 1)  # 207 pose blend shapes ('lrotmin': R - I of joints 1..23)
SMPL_SUBDIR = "smpl"  # <model_dir>/smpl/SMPL_NEUTRAL.pkl, as smplx expects
SMPL_NEUTRAL_FILENAMES = ("SMPL_NEUTRAL.pkl", "SMPL_NEUTRAL.npz", "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl")
H36M_REGRESSOR_FILENAME = "J_regressor_h36m_correct.npy"
MESH_DOWNSAMPLING_FILENAME = "mesh_downsampling.npz"
SEG_PART_INFO_FILENAME = "seg_part_info.npy"
SYNTHETIC_MARKER_FILENAME = "SYNTHETIC_BODY.txt"  # present in directories of the synthetic body
# Official names of the contact parts in seg_part_info.npy (index = contact label).
SEG_PART_NAMES = ("default", "L_Leg", "R_Leg", "L_Hand", "R_Hand", "back", "gluteus", "thighs")
# Mesh-network template: global orient about x by pi (upside down = camera orientation, y down), written
# 3.1416 as the official code (`init_pose[:, 0] = 3.1416`) so the template matches the one the released
# weights were trained with (pi would move template vertices by up to 7e-6 m).
TEMPLATE_GLOBAL_ORIENT_X = 3.1416

# --- run-time options -------------------------------------------------------------------------------
# Inference precisions (PipelineConfig.precision, the node's precision, --precision): fp32; bf16 / fp16
# autocast of the networks; auto, resolved by sahmr_ros.networks.precision.resolve_precision.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
