# All metadata lives in pyproject.toml; this file only tells setuptools about
# the cffi extension (the `cffi_modules` keyword is added by cffi).
from setuptools import setup

setup(cffi_modules=["lwp/_native_build.py:ffi"])
