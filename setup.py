"""The compiled hot paths (surveil/events/_svev.c: the SVEV frame decoder, the per-account rules' counting);
everything else is in pyproject.toml.

The extension is optional: when it cannot be built, the install still succeeds and binary.py uses its
numpy decoder (slower, same results)."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler: the numpy decoder is used
            print(f"warning: surveil.events._svev not built ({e}); the numpy decoder will be used")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            print(f"warning: {ext.name} not built ({e}); the numpy decoder will be used")


setup(
    ext_modules=[Extension("surveil.events._svev", ["surveil/events/_svev.c"], extra_compile_args=["-O2"])],
    cmdclass={"build_ext": OptionalBuildExt},
)
