"""Thin stage entry points: parse paths, load params, call the library, write outputs.

Each module has `main(argv=None)` (tests call it in-process) and is run by `dvc.yaml` as
`audioclf stage NAME`.
"""
