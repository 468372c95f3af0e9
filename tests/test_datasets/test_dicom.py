import io
import traceback
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit,
                         SecondaryCaptureImageStorage, generate_uid)

from mmseg_ptx.datasets import DicomReadWarning
from mmseg_ptx.datasets.dicom import (DicomReadCause, DicomReadError,
                                      is_dicom, read_dicom, read_dicom_shape)
from mmseg_ptx.datasets.dicom_messages import redact_lines

PHI = ('Secret^Person', 'PIDSECRET42', '19010203', '20190405')


def make_dicom(path, arr, photometric='MONOCHROME2', jpeg=False, **extra):
    """Write ``arr`` (uint8 or uint16, 2-D or frames x H x W) as DICOM."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg \
        else ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.StudyDate = PHI
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 8 if arr.dtype == np.uint8 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = extra.pop('BitsStored', bits)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in extra.items():
        setattr(ds, key, value)
    if jpeg:
        buf = io.BytesIO()
        Image.fromarray(arr, mode='L').save(buf, 'JPEG', quality=95)
        ds.PixelData = encapsulate([buf.getvalue()])
    else:
        ds.PixelData = np.ascontiguousarray(arr).tobytes()
    ds['PixelData'].VR = 'OB' if bits == 8 else 'OW'
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return str(path)


@pytest.fixture
def grey8():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (48, 64), dtype=np.uint8)


def smooth8():
    y, x = np.mgrid[:48, :64]
    return (100 + 80 * np.sin(x / 9) * np.cos(y / 7)).astype(np.uint8)


def test_8bit_monochrome2_unchanged(tmp_path, grey8):
    path = make_dicom(tmp_path / 'a.dcm', grey8)
    img = read_dicom(path)
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, grey8)
    assert read_dicom_shape(path) == (48, 64)


def test_8bit_monochrome1_inverted(tmp_path, grey8):
    path = make_dicom(tmp_path / 'a.dcm', grey8, photometric='MONOCHROME1')
    np.testing.assert_array_equal(read_dicom(path), 255 - grey8)


def test_presentation_lut_shape_inverse(tmp_path, grey8):
    # INVERSE on MONOCHROME2 (some CR/DR exports): shown inverted.
    path = make_dicom(tmp_path / 'a.dcm', grey8,
                      PresentationLUTShape='INVERSE')
    np.testing.assert_array_equal(read_dicom(path), 255 - grey8)
    # On MONOCHROME1 (as the DX module requires) it names the same
    # inversion: applied once. IDENTITY changes nothing.
    path = make_dicom(tmp_path / 'b.dcm', grey8, photometric='MONOCHROME1',
                      PresentationLUTShape='INVERSE')
    np.testing.assert_array_equal(read_dicom(path), 255 - grey8)
    path = make_dicom(tmp_path / 'c.dcm', grey8,
                      PresentationLUTShape='IDENTITY')
    np.testing.assert_array_equal(read_dicom(path), grey8)


def test_16bit_min_max_scaled(tmp_path):
    arr = np.linspace(100, 3000, 48 * 64).reshape(48, 64).astype(np.uint16)
    path = make_dicom(tmp_path / 'a.dcm', arr, BitsStored=12)
    img = read_dicom(path)
    expected = np.rint((arr - 100.0) / 2900 * 255).astype(np.uint8)
    assert np.abs(img.astype(int) - expected).max() <= 1
    assert img.min() == 0 and img.max() == 255


def test_16bit_monochrome1_inverted(tmp_path):
    arr = np.linspace(0, 4095, 48 * 64).reshape(48, 64).astype(np.uint16)
    path = make_dicom(tmp_path / 'a.dcm', arr, photometric='MONOCHROME1',
                      BitsStored=12)
    img = read_dicom(path)
    assert img[0, 0] == 255 and img[-1, -1] == 0
    assert np.all(np.diff(img.ravel().astype(int)) <= 0)


def test_voi_window_applied_after_rescale(tmp_path):
    arr = np.linspace(0, 4000, 48 * 64).reshape(48, 64).astype(np.uint16)
    # Rescale to -1000..3000, then window 1000 +- 500.
    path = make_dicom(tmp_path / 'a.dcm', arr, BitsStored=12,
                      RescaleSlope=1, RescaleIntercept=-1000,
                      WindowCenter=1000, WindowWidth=1000)
    img = read_dicom(path).astype(int)
    hu = arr.astype(float) - 1000
    assert (img[hu < 490] == 0).all()
    assert (img[hu > 1510] == 255).all()
    mid = np.abs(hu - 1000) < 5
    assert mid.any() and (np.abs(img[mid] - 127.5) <= 3).all()


def test_voi_lut_sequence_applied_over_its_used_range(tmp_path):
    """A VOI LUT (here: clip at 2047, output 0..4094 in 16-bit entries)
    is applied, and scaled from the values it uses, not its 16 bits."""
    arr = np.linspace(0, 4095, 48 * 64).reshape(48, 64).astype(np.uint16)
    lut = pydicom.Dataset()
    lut.add_new(0x00283002, 'US', [4096, 0, 16])  # LUTDescriptor
    lut.add_new(0x00283006, 'US',  # LUTData
                (2 * np.minimum(np.arange(4096), 2047)).tolist())
    path = make_dicom(tmp_path / 'a.dcm', arr, BitsStored=12,
                      VOILUTSequence=pydicom.Sequence([lut]))
    img = read_dicom(path)
    expected = np.round(2 * np.minimum(arr, 2047) / 4094 * 255)
    np.testing.assert_array_equal(img, expected.astype(np.uint8))
    assert (img[arr >= 2047] == 255).all() and img.min() == 0


@pytest.mark.parametrize('vr', ['US', 'OW'])
def test_voi_lut_of_8bit_entries_indexes_every_stored_value(tmp_path, vr):
    """A LUT of 4096 entries of 8 bits: stored values above 255 are looked
    up, not wrapped to value % 256 (pydicom's bug, mmseg_ptx.compat fix
    8)."""
    arr = np.tile(np.arange(100, 4096, 256), (4, 1)).astype(np.uint16)
    entries = np.arange(4096) // 16
    lut = pydicom.Dataset()
    lut.add_new(0x00283002, 'US', [4096, 0, 8])  # LUTDescriptor
    lut.add_new(0x00283006, vr, entries.tolist() if vr == 'US' else
                entries.astype('<u2').tobytes())  # LUTData
    path = make_dicom(tmp_path / 'a.dcm', arr, BitsStored=12,
                      VOILUTSequence=pydicom.Sequence([lut]))
    np.testing.assert_array_equal(read_dicom(path), arr // 16)


def test_voi_lut_after_rescale_rounds_without_warning(tmp_path):
    """The rescale's float output is rounded to the LUT's integer inputs
    (pydicom truncates, and warns on every image)."""
    arr = np.tile(np.arange(0, 48), (4, 1)).astype(np.uint16)
    lut = pydicom.Dataset()
    lut.add_new(0x00283002, 'US', [24, 0, 16])  # LUTDescriptor
    lut.add_new(0x00283006, 'US', list(range(0, 240, 10)))  # LUTData
    # Slope 0.5: stored 2k + 1 -> k + 0.5, rounded half to even.
    path = make_dicom(tmp_path / 'a.dcm', arr, BitsStored=12,
                      RescaleSlope=0.5, RescaleIntercept=0,
                      VOILUTSequence=pydicom.Sequence([lut]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        img = read_dicom(path)
    index = np.minimum(np.rint(arr * 0.5), 23)
    np.testing.assert_array_equal(
        img, np.rint(index * 10 / 230 * 255).astype(np.uint8))


def test_8bit_rescale_uses_stored_range(tmp_path, grey8):
    # slope 2: output range 0..510 maps back to 0..255, no stretching.
    path = make_dicom(tmp_path / 'a.dcm', grey8 // 2, RescaleSlope=2,
                      RescaleIntercept=0)
    img = read_dicom(path).astype(int)
    assert np.abs(img - (grey8 // 2)).max() <= 1


def test_8bit_voi_window_applied(tmp_path):
    """An 8-bit file with a window (a re-export, say) is windowed, not
    taken as it is."""
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    path = make_dicom(tmp_path / 'a.dcm', ramp, WindowCenter=128,
                      WindowWidth=64)
    img = read_dicom(path)
    assert (img[:, :96] == 0).all() and (img[:, 161:] == 255).all()
    assert np.all(np.diff(img[0].astype(int)) >= 0)


def test_signed_8bit_spans_its_range(tmp_path):
    """PixelRepresentation 1: stored -128..127 becomes 0..255, in order."""
    stored = (np.arange(256) - 128).astype(np.int8).reshape(4, 64)
    path = make_dicom(tmp_path / 'a.dcm', stored.view(np.uint8),
                      PixelRepresentation=1)
    img = read_dicom(path)
    np.testing.assert_array_equal(img.ravel(), np.arange(256))


def test_jpeg_baseline_close_to_original(tmp_path):
    arr = smooth8()
    path = make_dicom(tmp_path / 'a.dcm', arr, jpeg=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == \
        JPEGBaseline8Bit
    img = read_dicom(path)
    assert img.shape == arr.shape and img.dtype == np.uint8
    assert np.abs(img.astype(int) - arr).mean() < 2


def test_multiframe_rejected(tmp_path):
    arr = np.zeros((2, 8, 8), np.uint8)
    path = make_dicom(tmp_path / 'a.dcm', arr, NumberOfFrames=2)
    with pytest.raises(DicomReadError, match='2 frames'):
        read_dicom(path)


def test_colour_rejected(tmp_path, grey8):
    path = make_dicom(tmp_path / 'a.dcm', grey8)
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = 'RGB'
    ds.PlanarConfiguration = 0
    ds.PixelData = np.repeat(grey8[..., None], 3, 2).tobytes()
    ds.save_as(path)
    with pytest.raises(DicomReadError, match="not greyscale.*'RGB'"):
        read_dicom(path)


def test_non_standard_photometric_value_is_not_quoted(tmp_path, grey8):
    # Only the standard's terms are quoted: a corrupt element's value may
    # run on into the elements after it.
    path = make_dicom(tmp_path / 'a.dcm', grey8, photometric=PHI[1])
    with pytest.raises(DicomReadError,
                       match='not greyscale.*not a standard value') as err:
        read_dicom(path)
    assert_clean_error(err.value, path)


def assert_clean(message, path):
    assert str(path) in message
    for value in PHI:
        assert value not in message


def assert_clean_error(err, path):
    """The error's message, and its whole traceback as a log shows it
    (the error behind it included), name the file and no patient data."""
    assert_clean(str(err), path)
    shown = ''.join(traceback.format_exception(err))
    for value in PHI:
        assert value not in shown


def test_missing_file(tmp_path):
    path = tmp_path / 'nope.dcm'
    for reader in (read_dicom, read_dicom_shape):
        with pytest.raises(DicomReadError, match='not found') as err:
            reader(path)
        assert str(path) in str(err.value)
    assert issubclass(DicomReadError, OSError)


@pytest.mark.parametrize('content', [b'hello, not a DICOM file' * 10, b''])
def test_not_dicom(tmp_path, content):
    path = tmp_path / 'junk.dcm'
    path.write_bytes(content)
    for reader in (read_dicom, read_dicom_shape):
        with pytest.raises(DicomReadError) as err:
            reader(path)
        assert_clean_error(err.value, path)
        # The problem said in full, not cut at pydicom's quoted 'DICM'.
        assert 'not a DICOM Part-10 file (no DICM marker' in str(err.value)
        assert 'withheld' not in str(err.value)


def test_truncated_pixel_data_names_file_not_patient(tmp_path, grey8):
    path = make_dicom(tmp_path / 'a.dcm', grey8)
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:-1000])
    # The header is intact: the size is still readable without pixels.
    assert read_dicom_shape(path) == (48, 64)
    with pytest.raises(DicomReadError) as err:
        read_dicom(path)
    assert_clean_error(err.value, path)


def test_truncated_encapsulated_file_says_it_may_end_early(tmp_path):
    # pydicom reads a compressed file cut in the middle of its pixel data
    # without an error and without the PixelData element.
    path = make_dicom(tmp_path / 'a.dcm', smooth8(), jpeg=True)
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) * 3 // 4])
    with pytest.raises(DicomReadError, match='ends early') as err:
        read_dicom(path)
    assert_clean_error(err.value, path)


def test_corrupt_jpeg_names_file_not_patient(tmp_path, caplog):
    caplog.set_level('DEBUG', logger='pydicom')
    path = make_dicom(tmp_path / 'a.dcm', smooth8(), jpeg=True)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([b'\xff\xd8' + b'\x00' * 200])
    ds.save_as(path)
    with pytest.raises(DicomReadError) as err:
        read_dicom(path)
    message = str(err.value)
    assert_clean(message, path)
    # The transfer syntax and the decoder's reason, from pydicom's later
    # lines, are kept.
    assert '(JPEG Baseline' in message
    assert 'pillow:' in message.lower()
    # The decoder logs to a child of the 'pydicom' logger: redacted too,
    # without the traceback.
    records = [r for r in caplog.records
               if r.name.startswith('pydicom.pixels')]
    assert records
    for record in records:
        assert record.getMessage().startswith(f'DICOM file {path}: ')
        assert record.exc_info is None and record.exc_text is None


@pytest.mark.parametrize('message,expected', [
    ("Unable to decompress 'JPEG-LS' pixel data:\n\tgdcm - requires gdcm",
     'Unable to decompress <value withheld>; gdcm - requires gdcm'),
    # An unclosed quote: the value runs on into the next lines.
    ("Cannot decode as a 'x\nSecret^Person 19010203' here\nmore",
     'Cannot decode as a <value withheld>'),
])
def test_redact_lines(message, expected):
    assert redact_lines(message) == expected


def test_unknown_transfer_syntax_spanning_lines_is_withheld(
        tmp_path, grey8):
    """A Transfer Syntax UID whose value ran on into header bytes, with a
    quote and a form feed (a line break to str.splitlines) before patient
    data: pydicom quotes it across lines; only the first line may stay."""
    import struct
    path = make_dicom(tmp_path / 'a.dcm', grey8)
    raw = open(path, 'rb').read()
    at = raw.index(b'\x02\x00\x10\x00UI')  # (0002,0010) Transfer Syntax
    old_len = struct.unpack('<H', raw[at + 6:at + 8])[0]
    value = b"1.2.9'\x0c" + PHI[0].encode() + b' ' + PHI[1].encode()
    value += b' ' * (len(value) % 2)
    raw = (raw[:at + 6] + struct.pack('<H', len(value)) + value +
           raw[at + 8 + old_len:])
    group = raw.index(b'\x02\x00\x00\x00UL')  # its group length
    length = struct.unpack('<I', raw[group + 8:group + 12])[0]
    raw = (raw[:group + 8] +
           struct.pack('<I', length + len(value) - old_len) + raw[group + 12:])
    open(path, 'wb').write(raw)
    with pytest.raises(DicomReadError, match='Cannot decode') as err:
        read_dicom(path)
    assert_clean_error(err.value, path)


def corrupt_length(path, value):
    """Give the element holding ``value`` a too large length: the value
    runs on into the following elements, so a message quoting it quotes the
    raw bytes, the patient's name and ID included."""
    data = bytearray(open(path, 'rb').read())
    at = data.index(value)
    data[at - 2:at] = (200).to_bytes(2, 'little')
    open(path, 'wb').write(bytes(data))


@pytest.fixture(params=['transfer_syntax', 'charset'])
def leaky_dicom(request, tmp_path, grey8):
    """Files whose pydicom warnings quote patient data: an invalid UI value
    (value validation) and an unknown character set (not validation)."""
    if request.param == 'charset':
        path = make_dicom(tmp_path / 'a.dcm', grey8,
                          SpecificCharacterSet='ISO IR 100')
        corrupt_length(path, b'ISO IR 100')
    else:
        path = make_dicom(tmp_path / 'a.dcm', grey8)
        corrupt_length(path, ExplicitVRLittleEndian.encode())
    return path


def test_no_patient_data_in_warnings_or_logs(leaky_dicom, caplog):
    caplog.set_level('DEBUG', logger='pydicom')
    for reader in (read_dicom, read_dicom_shape):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                reader(leaky_dicom)
            except DicomReadError as err:
                assert_clean(str(err), leaky_dicom)
        assert caught, 'the file should give pydicom warnings'
        for warning in caught:
            assert warning.category is DicomReadWarning
            assert_clean(str(warning.message), leaky_dicom)
    assert caplog.records
    for record in caplog.records:
        assert_clean(record.getMessage(), leaky_dicom)
    assert warnings.showwarning is warnings._showwarning_orig


def test_pydicom_debug_mode_logs_no_patient_data(tmp_path, grey8, caplog):
    # pydicom.config.debug(True) logs every element read, its bytes in hex
    # too ('53 65 63 72 65 74' for 'Secret').
    caplog.set_level('DEBUG', logger='pydicom')
    path = make_dicom(tmp_path / 'a.dcm', grey8)
    pydicom.config.debug(True)
    try:
        read_dicom(path)
    finally:
        pydicom.config.debug(False)
    for record in caplog.records:
        message = record.getMessage()
        assert_clean(message, path)
        for value in PHI:
            assert ' '.join(f'{b:02x}' for b in value.encode()) not in message


def test_nested_reads_name_the_outer_file_again(tmp_path):
    from mmseg_ptx.datasets import dicom_messages
    outer, inner = tmp_path / 'outer.dcm', tmp_path / 'inner.dcm'
    with dicom_messages.pydicom_values_withheld(outer):
        with dicom_messages.pydicom_values_withheld(inner):
            assert dicom_messages._where() == f'DICOM file {inner}'
        assert dicom_messages._where() == f'DICOM file {outer}'
    assert dicom_messages._where() == 'A DICOM file'


def test_warnings_as_errors_are_read_errors(leaky_dicom):
    # A user's "error" filter must not turn a corrupt file into an
    # exception that callers catching OSError (tools/infer.py) miss.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for reader in (read_dicom, read_dicom_shape):
            with pytest.raises(DicomReadError) as err:
                reader(leaky_dicom)
            assert_clean_error(err.value, leaky_dicom)


def test_concurrent_reads_restore_the_hooks(leaky_dicom):
    import logging
    from concurrent.futures import ThreadPoolExecutor

    def read(_):
        with pytest.raises(DicomReadError):
            read_dicom(leaky_dicom)

    shown_by = warnings.showwarning
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(read, range(40)))
    assert warnings.showwarning is shown_by
    assert not logging.getLogger('pydicom').filters
    assert not logging.getLogger('pydicom.pixels.decoders.base').filters


def test_hook_left_installed_by_catch_warnings_elsewhere(leaky_dicom):
    """Another thread's warnings.catch_warnings, entered during a read and
    left after it, puts the redacting showwarning back: the next read must
    not take it for the one to call (it would call itself forever)."""
    from mmseg_ptx.datasets import dicom_messages
    original = warnings.showwarning
    shown = []
    warnings.showwarning = lambda message, category, *args: shown.append(
        category)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            with dicom_messages.pydicom_values_withheld(leaky_dicom):
                elsewhere = warnings.catch_warnings()
                elsewhere.__enter__()
            elsewhere.__exit__(None, None, None)
            assert warnings.showwarning is dicom_messages._show
            with pytest.raises(DicomReadError) as err:
                read_dicom(leaky_dicom)
        assert 'recursion' not in str(err.value)
        assert shown and set(shown) == {DicomReadWarning}
    finally:
        warnings.showwarning = original


def test_reads_keep_which_warnings_were_shown(tmp_path, grey8):
    # warnings.catch_warnings around each read would reset the "shown
    # once" record of every warning in the process.
    path = make_dicom(tmp_path / 'a.dcm', grey8)

    def library_warning():
        warnings.warn('shown once', UserWarning)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('default')
        for _ in range(3):
            library_warning()
            read_dicom(path)
    assert [str(w.message) for w in caught] == ['shown once']


def test_is_dicom_by_preamble(tmp_path, grey8):
    path = make_dicom(tmp_path / 'noext', grey8)
    assert is_dicom(path)
    png = tmp_path / 'a.png'
    Image.fromarray(grey8).save(png)
    assert not is_dicom(png)
    assert is_dicom(tmp_path / 'missing.DCM')  # by name


def test_the_error_behind_a_read_error_is_kept_without_patient_data(
        tmp_path, grey8, monkeypatch):
    # Where pydicom or numpy failed shows in the traceback (a broken
    # install reads as a bad image otherwise), its message cut at the
    # first quote, as the read error's own.
    path = make_dicom(tmp_path / 'a.dcm', grey8)

    # A decoder's message: its later lines say why (kept for a known
    # transfer syntax, as in the read error's own message).
    message = (f"module 'numpy' has no attribute {PHI[0]!r}\n"
               'pillow: no JPEG support')

    def broken(self):
        raise AttributeError(message)

    monkeypatch.setattr(pydicom.Dataset, 'pixel_array', property(broken))
    with pytest.raises(DicomReadError, match='Cannot decode') as err:
        read_dicom(path)
    assert_clean_error(err.value, path)
    cause = err.value.__cause__
    assert isinstance(cause, DicomReadCause)
    assert str(cause) == ('AttributeError: module <value withheld>; '
                          'pillow: no JPEG support')
    frames = traceback.extract_tb(cause.__traceback__)
    assert frames[-1].name == 'broken'


def test_the_error_behind_a_header_or_window_failure_is_kept(
        tmp_path, grey8, monkeypatch):
    import mmseg_ptx.datasets.dicom as dicom
    path = make_dicom(tmp_path / 'a.dcm', grey8)

    def bad_header(*args, **kwargs):
        raise ValueError(f'bad value {PHI[1]!r}')

    monkeypatch.setattr(pydicom, 'dcmread', bad_header)
    for reader in (read_dicom, read_dicom_shape):
        with pytest.raises(DicomReadError, match='Cannot read DICOM') as err:
            reader(path)
        assert_clean_error(err.value, path)
        assert isinstance(err.value.__cause__, DicomReadCause)
        assert str(err.value.__cause__) == 'ValueError: bad value <value ' \
            'withheld>'
        assert traceback.extract_tb(
            err.value.__cause__.__traceback__)[-1].name == 'bad_header'
    monkeypatch.undo()

    def bad_window(*args):
        raise ValueError(f'window {PHI[2]!r}')

    monkeypatch.setattr(dicom, '_to_uint8', bad_window)
    with pytest.raises(DicomReadError, match='LUT/window') as err:
        read_dicom(path)
    assert_clean_error(err.value, path)
    assert str(err.value.__cause__) == 'ValueError: window <value withheld>'

    def out_of_memory(*args):
        raise MemoryError('windowing a large image')

    # Where a large image is most likely to run out of memory: not the
    # file's fault.
    monkeypatch.setattr(dicom, '_to_uint8', out_of_memory)
    with pytest.raises(MemoryError, match='windowing'):
        read_dicom(path)


@pytest.mark.parametrize('error', [MemoryError, RecursionError, ImportError])
def test_errors_of_the_process_are_not_blamed_on_the_file(
        tmp_path, grey8, monkeypatch, error):
    path = make_dicom(tmp_path / 'a.dcm', grey8)

    def failing(self):
        raise error('out of it')

    monkeypatch.setattr(pydicom.Dataset, 'pixel_array', property(failing))
    with pytest.raises(error, match='out of it'):
        read_dicom(path)
