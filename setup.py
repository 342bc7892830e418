"""Compile the stream operators (features/stream/state.py) with Cython at install.

The module is plain Python and stays the only source; compiled, a stream worker spends less
CPU per event (measured in docs/features.md, "Compiled operators"). Without Cython or a C
compiler the install goes on with the pure-Python module (the extension is optional).
Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # a build without its build requirements (--no-build-isolation): pure Python
    extensions = []
else:
    extensions = cythonize(
        [Extension("dataflow_playground.features.stream.state",
                   ["src/dataflow_playground/features/stream/state.py"], optional=True)],
        # Plain Python semantics: annotations are not C types, ints do not overflow.
        compiler_directives={"language_level": 3, "annotation_typing": False},
        quiet=True)

setup(ext_modules=extensions)
