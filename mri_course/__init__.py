"""The course's tooling, which no lesson teaches: the `mri-course` command, the batch runner,
the benchmark, whole-scan translation, the evaluate and translate commands, training's
plumbing for lesson 04 (`training_run`), and the export of the lessons' `# @save` cells into
`mri_helpers`. It imports `mri_helpers`, never the reverse."""
