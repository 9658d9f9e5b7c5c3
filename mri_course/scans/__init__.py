"""Translating whole scans: NIfTI volumes and DICOM series, back onto their own voxel grid.

No lesson teaches this; `mri-course translate` uses it for `.nii`/`.nii.gz` files and DICOM
series. The networks translate 2-D axial slices as the course stores them, so every scan
goes the same way there and back:

1. read: NIfTI with nibabel, DICOM series with SimpleITK (GDCM sorts the slices), its
   geometry as a NIfTI affine (voxel index -> millimetres, RAS+);
2. reorient: the voxel axes are permuted and flipped to the closest canonical orientation
   (`nibabel.orientations`), slices along the axis nearest superior-inferior, rows and
   columns as the model's slices run (`model_geometry`), so a sagittal scan is cut axially;
3. scale: one linear map per volume, background -> 0 and a percentile inside the head -> its
   value in the model's training slices (`IntensityScaling`), so scanner units do not matter;
4. resample each slice linearly to the model's pixel size (1 mm), cropped around the head,
   pad it to the network's square (`processing.to_model_geometry`), translate in batches,
   and undo every step in reverse: the output has exactly the input's shape and affine.

Oblique scans are cut along the voxel axes closest to axial; the obliquity (recorded in the
sidecar) is not resampled away, so nothing is interpolated across slices. Thick slices are
translated one by one as they are. Slices go through the network `BATCH_SIZE` at a time,
so TensorFlow never holds more than a batch; a progress bar counts them. The network computes
at the course's MIXED_PRECISION ("auto": bfloat16 on a CPU that computes it natively), while
a thread per processor prepares the next batch (`run_plan`).

Each output comes with a JSON sidecar: that it is synthetic, the model, how the intensities
were scaled (and what fraction had to be clipped), the resampling and, if asked for, what the
uncertainty map (the spread of the export's test-time copies) is and is not. Every input and
output is checked before anything is written (`translate_volume_files`).

The subpackage's modules: `reading` (scans in, outputs written whole), `geometry`,
`intensities`, `translation`, and `harmonisation` (`mri-course harmonise`: a scan from
another scanner brought to the training slices' grey levels before translating).
"""

from __future__ import annotations

from .geometry import (
    COURSE_PIXEL_SPACING_MM,
    COURSE_SLICE_ORIENTATION,
    CROP_MARGIN_MM,
    InPlaneGrid,
    Reorientation,
    in_plane_grid,
    model_geometry,
    reorientation,
)
from .intensities import (
    COURSE_HEAD_LEVELS,
    HEAD_PERCENTILE,
    MASK_VOXELS,
    IntensityScaling,
    head_levels,
    head_mask_3d,
    model_head_levels,
    robust_scaling,
)
from .reading import (
    DICOM_SUFFIXES,
    KEEP_LOADED_BYTES,
    LPS_TO_RAS,
    MAX_VOLUME_BYTES,
    MAX_VOLUME_VOXELS,
    NIFTI_SUFFIXES,
    OUTPUT_SUFFIXES,
    DicomSeries,
    Scan,
    collect_scans,
    dicom_series_in,
    is_dicom_file,
    is_nifti,
    is_volume_input,
    nifti_stem,
    output_image,
    output_paths,
    read_dicom_series,
    read_nifti,
    sitk_affine,
)
from .translation import (
    BATCH_SIZE,
    MAX_IN_PLANE,
    MIN_IN_PLANE,
    UNCERTAINTY_MEANING,
    VolumePlan,
    copies_of,
    plan_volume,
    run_plan,
    translate_volume,
    translate_volume_files,
)

__all__ = [
    "BATCH_SIZE",
    "COURSE_HEAD_LEVELS",
    "COURSE_PIXEL_SPACING_MM",
    "COURSE_SLICE_ORIENTATION",
    "CROP_MARGIN_MM",
    "DICOM_SUFFIXES",
    "DicomSeries",
    "HEAD_PERCENTILE",
    "InPlaneGrid",
    "IntensityScaling",
    "KEEP_LOADED_BYTES",
    "LPS_TO_RAS",
    "MASK_VOXELS",
    "MAX_IN_PLANE",
    "MAX_VOLUME_BYTES",
    "MAX_VOLUME_VOXELS",
    "MIN_IN_PLANE",
    "NIFTI_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "Reorientation",
    "Scan",
    "UNCERTAINTY_MEANING",
    "VolumePlan",
    "collect_scans",
    "copies_of",
    "dicom_series_in",
    "head_levels",
    "head_mask_3d",
    "in_plane_grid",
    "is_dicom_file",
    "is_nifti",
    "is_volume_input",
    "model_geometry",
    "model_head_levels",
    "nifti_stem",
    "output_image",
    "output_paths",
    "plan_volume",
    "read_dicom_series",
    "read_nifti",
    "reorientation",
    "robust_scaling",
    "run_plan",
    "sitk_affine",
    "translate_volume",
    "translate_volume_files",
]
