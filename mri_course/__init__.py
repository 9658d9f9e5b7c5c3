"""The course's tooling, which no lesson teaches: exporting the lessons' code into
`mri_helpers`. It imports `mri_helpers`, never the reverse."""
