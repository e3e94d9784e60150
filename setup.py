"""DeepTrust packaging, in Beam's convention: ``--setup_file ./setup.py`` ships ``pipelines/``
and ``model/`` to remote workers. TensorFlow is an extra, because CPU machines and the GPU worker
container install different builds of the same version."""

from setuptools import find_packages, setup

TF_VERSION = "2.21.0"
SERVE_REQUIREMENTS = [
    "fastapi==0.136.3",
    "starlette==1.10.0",
    "Jinja2==3.1.6",
    "uvicorn==0.55.0",
    "python-multipart==0.0.34",
]

setup(
    name="deeptrust",
    version="0.1.0",
    description="Batch deepfake moderation for videos in object storage",
    packages=find_packages(include=["model", "model.*", "pipelines", "pipelines.*"]),
    # The Alembic revisions travel with the code, so an installed copy (the worker image, a
    # wheel) migrates its database just as a checkout does.
    package_data={
        "pipelines.store": ["alembic/*.py", "alembic/script.py.mako", "alembic/versions/*.py"],
        # The review app's and the report's pages, and the app's one vendored script (htmx).
        "pipelines.moderation": ["templates/*.html", "static/*"],
    },
    python_requires=">=3.11,<3.12",
    install_requires=[
        "apache-beam[aws]==2.77.0",
        "opencv-python-headless==5.0.0.93",
        "numpy==2.4.6",
        "mtcnn==1.0.0",
        "scikit-video==1.1.11",
        "scikit-image==0.26.0",
        "matplotlib==3.11.2",
        "SQLAlchemy==2.1.9",
        "alembic==1.20.1",
        "psycopg[binary]==3.3.9",
        "prometheus-client==0.26.0",
        "boto3==1.44.8",
        "rich==15.0.0",
        # Builds from source (g++, Python headers): the worker image installs both.
        "pdqhash==0.2.8",
        # LiteRT: the int8 backbone (--precision int8) and exported edge detectors.
        "ai-edge-litert==2.3.0",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={TF_VERSION}"],
        "gpu": [f"tensorflow[and-cuda]=={TF_VERSION}"],
        # `deeptrust serve` and `deeptrust report`; never needed on a Beam worker. The versions
        # are the ones Airflow's pins resolve to, so both install into one environment.
        "serve": SERVE_REQUIREMENTS,
    },
    entry_points={"console_scripts": ["deeptrust=pipelines.cli:main"]},
)
