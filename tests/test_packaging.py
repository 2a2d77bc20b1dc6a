"""Packaging (issue 11 item 7): MIT LICENSE in the distribution, derivations/ shipped as
package data so the docstrings' pointers exist after ``pip install .``, the demo's default
output folder ignored by git."""
import pathlib
import subprocess
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_license_file_matches_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the senn-ref authors" in text
    cfg = (ROOT / "setup.cfg").read_text()
    assert "license = MIT" in cfg and "license_files = LICENSE" in cfg


def test_build_ships_derivations_and_license(tmp_path):
    """build_py (what a wheel contains) and sdist, into tmp_path; nothing is written to the tree."""
    cmd = [sys.executable, "-c", "from setuptools import setup; setup()", "-q",
           "egg_info", "--egg-base", str(tmp_path), "build_py", "--build-lib", str(tmp_path / "lib"),
           "sdist", "-d", str(tmp_path / "sdist")]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    source = sorted(p.name for p in (ROOT / "derivations").glob("*.md"))
    built = tmp_path / "lib" / "senn_ref" / "derivations"
    assert len(source) >= 13 and sorted(p.name for p in built.glob("*.md")) == source
    for name in source:             # regular files with the same text, not a dangling link
        shipped = built / name
        assert not shipped.is_symlink() and shipped.read_bytes() == (ROOT / "derivations" / name).read_bytes()
    # setuptools >= 69.3 names the sdist senn_ref-*.tar.gz (PEP 625), older ones senn-ref-*
    (archive,) = (tmp_path / "sdist").glob("senn[-_]ref-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    top = archive.name[:-len(".tar.gz")]
    assert f"{top}/LICENSE" in names and f"{top}/senn_ref/derivations/11-kfac.md" in names


def test_docstring_pointers_resolve_from_the_package_directory():
    """'derivations/NN-name.md' in a docstring is relative to the package directory, in a
    checkout (through the symlink) as after installation (package data)."""
    import senn_ref
    pkg = pathlib.Path(senn_ref.__file__).parent
    assert (pkg / "derivations" / "11-kfac.md").read_text().startswith("# 11 K-FAC")


def test_demo_output_folder_is_ignored_by_git():
    from senn_ref.cli import build_parser
    default = build_parser().parse_args(["demo"]).out
    ignored = (ROOT / ".gitignore").read_text().split()
    assert f"{default}/" in ignored or default in ignored
