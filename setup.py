"""sahmr_ros: scene-aware human mesh recovery (SA-HMR, CVPR 2023) for ROS 2 and plain Python."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "sahmr_ros"
HERE = Path(__file__).parent

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Scene-aware human mesh recovery (SA-HMR) as a ROS 2 node and a Python library",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # msg/*.msg is the one source of truth of the node's interfaces; sahmr_ros/ros/msg is a symlink
    # to it, so an editable install reads msg/ itself and a wheel carries copies as package data.
    # The embedded default's weights and model card (sahmr_ros/weights/) ship inside the package. colcon
    # installs the whole sahmr_ros/ directory (CMakeLists.txt), so both installs carry them.
    package_data={f"{PACKAGE}.ros": ["msg/*.msg"], f"{PACKAGE}.weights": ["*.pt", "*.json", "*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    # torch first: `pip install torch==2.13.0` (CPU) or a CUDA build of your choice; any torch >= 2.1
    # satisfies this and nothing newer is pulled in. spconv is installed separately because its
    # distribution name differs per platform (spconv for CPU, spconv-cu126 etc. for CUDA): see README.
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.10",
        # the pipeline keeps numpy's BLAS on one thread during a frame (its spinning workers starve torch's)
        "threadpoolctl>=3.1",
        "torch>=2.1",
        "smplx>=0.1.28",
        "trimesh>=4.0",
        "matplotlib>=3.7",
        "pillow>=9.0",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        # sahmr train's logs (torch.utils.tensorboard writes them); pulls no torch of its own
        "tensorboard>=2.14",
        # rosbag2 files and ROS messages without ROS: `sahmr bag`, the demo's bag, the node's conversions
        "rosbags>=0.11.9",
        "mcap>=1.1",
        # rendering (sahmr_ros.visualization.render): CPU ray casting, no GPU or display. 0.20 is the
        # first release with wheels for Python 3.10-3.12 on both x86_64 and aarch64 Linux (glibc >= 2.35);
        # its import needs Debian's libusb-1.0-0, libgl1 and libegl1 (the Makefile installs them).
        "open3d>=0.20,<0.21",
        # LAS maps for `sahmr scene prepare` (pure Python; .laz also needs lazrs, in the maps extra)
        "laspy>=2.4",
    ],
    # maps: the optional readers of `sahmr scene prepare` (E57: pye57, wheels for Linux x86_64, macOS and Windows
    # only; LAZ: lazrs; PCD binary_compressed: pypcd4). The tests use them where their wheels surely exist.
    extras_require={"test": ["pytest>=7.0", "hypothesis>=6.0", "mcap-ros2-support>=0.5", "flake8>=6.0",
                             "pydocstyle>=6.0", "pye57>=0.4; platform_machine == 'x86_64'",
                             "lazrs>=0.5; platform_machine == 'x86_64'", "pypcd4>=1.1; platform_machine == 'x86_64'"],
                    "maps": ["pye57>=0.4", "lazrs>=0.5", "pypcd4>=1.1"],
                    "cpu": ["spconv>=2.3"]},
    # sahmr_node and sahmr_scene_publisher need rclpy (a ROS 2 install, or the ros-jazzy wheels).
    entry_points={"console_scripts": ["sahmr = sahmr_ros.cli:main", "sahmr_node = sahmr_ros.ros.node:main",
                                      "sahmr_scene_publisher = sahmr_ros.ros.scene_publisher:main"]},
    zip_safe=False,
)
