"""Tiny hand-written SIIM-ACR trees (both layouts) for the tests."""
import csv
import os.path as osp

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

#: A header value that must never appear in logs or errors.
SECRET_PATIENT = 'Secret^Patient'


def write_dicom(path, rows=64, cols=64):
    """Write an 8-bit MONOCHROME2 DICOM with a gradient image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = osp.splitext(osp.basename(path))[0]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = SECRET_PATIENT
    ds.PatientID = 'SECRET-ID-123'
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    pixels = (np.arange(rows * cols) % 256).astype(np.uint8)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_dicom_root(root, rows, tree_only=(), shapes=None, stage1=False):
    """Build ``dicom-images-train/<Study>/<Series>/<id>.dcm`` + the CSV.

    Args:
        root (pathlib.Path): data_root.
        rows (list[tuple[str, str]]): (ImageId, EncodedPixels) CSV rows;
            ids whose name starts with ``'csvonly'`` get no file.
        tree_only (Sequence[str]): ids with a file but no CSV row.
        shapes (dict, optional): id -> (rows, cols); default 64x64.
        stage1 (bool): Spell the column `` EncodedPixels`` and values with
            a leading space, like the stage-1 file.
    """
    shapes = shapes or {}
    ids = [i for i, _ in rows if not i.startswith('csvonly')]
    for n, image_id in enumerate(dict.fromkeys(list(ids) + list(tree_only))):
        folder = root / 'dicom-images-train' / f'1.2.study{n % 2}' / \
            f'1.2.series{n}'
        folder.mkdir(parents=True, exist_ok=True)
        write_dicom(str(folder / f'{image_id}.dcm'),
                    *shapes.get(image_id, (64, 64)))
    with open(root / 'train-rle.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        if stage1:
            writer.writerow(['ImageId', ' EncodedPixels'])
            writer.writerows((i, ' ' + r) for i, r in rows)
        else:
            writer.writerow(['ImageId', 'EncodedPixels'])
            writer.writerows(rows)


def make_png_root(root, masks, image_only=(), csv_only=(), no_mask=()):
    """Build ``png_images/``, ``png_masks/`` and the CSV.

    Args:
        root (pathlib.Path): data_root.
        masks (dict[str, np.ndarray]): ImageId -> 0/1 mask; has_pneumo is
            taken from the mask.
        image_only (Sequence[str]): file names of images without a row.
        csv_only (Sequence[str]): ids listed without any file.
        no_mask (Sequence[str]): ids with a row and image but no mask.
    """
    (root / 'png_images').mkdir(parents=True)
    (root / 'png_masks').mkdir()
    lines = []
    for n, (image_id, mask) in enumerate(sorted(masks.items())):
        name = f'{n}_train_{int(mask.any())}_.png'
        cv2.imwrite(str(root / 'png_images' / name),
                    np.full(mask.shape, 128, np.uint8))
        if image_id not in no_mask:
            cv2.imwrite(str(root / 'png_masks' / name),
                        (mask * 255).astype(np.uint8))
        lines.append((image_id, name, int(mask.any())))
    for name in image_only:
        cv2.imwrite(str(root / 'png_images' / name),
                    np.zeros((8, 8), np.uint8))
    for image_id in csv_only:
        lines.append((image_id, f'{image_id}.png', 0))
    with open(root / 'stage_1_train_images.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        # Spaces around header names, as in some copies of the file.
        writer.writerow([' ImageId', 'new_filename ', ' has_pneumo'])
        writer.writerows(lines)
