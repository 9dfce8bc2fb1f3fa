# cffi_modules cannot be declared in pyproject.toml; everything else lives there.
#
# numa_numpy_startup.pth is the startup hook (numa_numpy/_frontends/startup.py):
# setuptools installs no top-level .pth file of its own accord, so the build
# copies it next to the package, into site-packages, for wheels and for
# editable installs alike.
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

STARTUP_PTH = Path(__file__).resolve().parent / "numa_numpy_startup.pth"


class BuildPyWithStartupHook(build_py):
    def run(self) -> None:
        super().run()
        self.copy_file(str(STARTUP_PTH), str(Path(self.build_lib) / STARTUP_PTH.name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [
            *super().get_outputs(include_bytecode),
            str(Path(self.build_lib) / STARTUP_PTH.name),
        ]


class EditableWheelWithStartupHook(editable_wheel):
    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        self.copy_file(str(STARTUP_PTH), str(Path(unpacked_wheel) / STARTUP_PTH.name))
        return result


setup(
    cffi_modules=["_build_cffi.py:ffibuilder"],
    cmdclass={"build_py": BuildPyWithStartupHook, "editable_wheel": EditableWheelWithStartupHook},
)
