# cffi_modules cannot be declared in pyproject.toml; everything else lives there.
from setuptools import setup

setup(cffi_modules=["_build_cffi.py:ffibuilder"])
