# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`python -m modeling_qface.training.teachers fetch [--cache-dir DIR]`: fetch the teachers' files into the cache (build time);
`python -m modeling_qface.training.teachers check`: say which teachers can run here."""

from __future__ import annotations

import argparse
import sys

from .assets import canonical_face, face_api_dir, resolve_cache_dir
from .base import TeacherUnavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_qface.training.teachers", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=("fetch", "check"))
    parser.add_argument("--cache-dir", help="default: $QFACE_TEACHERS_CACHE or ~/.cache/qface/teachers")
    args = parser.parse_args(argv)
    cache = resolve_cache_dir(args.cache_dir)
    if args.command == "fetch":
        canonical_face(cache)
        print(f"canonical face: {cache}")
        try:
            print(f"face-api: {face_api_dir(cache)}")
        except TeacherUnavailable as error:  # no npm: age and gender will be skipped anyway
            print(f"face-api: not fetched: {error}", file=sys.stderr)
        return 0
    from .labeling import TEACHERS, load_teachers

    teachers = load_teachers(TEACHERS, cache_dir=cache)
    teachers.close()
    for name in TEACHERS:
        print(f"{name:<10} {'UNAVAILABLE: ' + teachers.unavailable[name] if name in teachers.unavailable else 'ok'}")
    return 1 if teachers.unavailable else 0


if __name__ == "__main__":
    sys.exit(main())
