"""The one reader of image header facts (``imaging.facts``), on real photos saved by Pillow."""

from __future__ import annotations

import pytest
from PIL import ExifTags, Image

from lookalike.config import ScanConfig
from lookalike.grouping.keep import KeepPolicy
from lookalike.imaging.facts import FileFacts, bytes_facts, read_file_facts
from lookalike.inputs.walk import FileEntry
from lookalike.model import Hash, ImageRecord
from lookalike.worker import hash_file


@pytest.fixture
def photo(rgb_photos) -> Image.Image:
    im = Image.open(rgb_photos[0]).convert("RGB")
    im.info.clear()  # nothing of the source file's metadata carried into the saved ones
    return im


def _exif(make: str | None, model: str | None, original: str | None = None,
          modified: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    for tag, value in ((ExifTags.Base.Make, make), (ExifTags.Base.Model, model),
                       (ExifTags.Base.DateTime, modified)):
        if value is not None:
            exif[tag] = value
    if original is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = original
    return exif


def test_jpeg_with_camera_exif(tmp_path, photo):
    path = tmp_path / "shot.jpg"
    photo.save(path, quality=83, exif=_exif("NIKON CORPORATION", "NIKON D750",
                                            "2019:07:14 18:02:33"))
    assert read_file_facts(str(path)) == FileFacts(
        format="JPEG", mode="RGB", quality=83, lossless=False, grey=False,
        camera="NIKON CORPORATION NIKON D750", taken="2019-07-14 18:02:33", metadata=1)


def test_camera_names_the_maker_once_and_only_the_original_date_is_taken(tmp_path, photo):
    path = tmp_path / "edited.jpg"
    # An editor's modification date (DateTime) is not when the picture was taken.
    photo.save(path, quality=90, exif=_exif("Canon", "Canon EOS R5\x00",
                                            modified="2024:01:02 03:04:05"))
    facts = read_file_facts(str(path))
    assert facts.camera == "Canon EOS R5" and facts.taken is None
    # A date in no EXIF date format is no date.
    photo.save(path, quality=90, exif=_exif(None, None, original="yesterday"))
    assert read_file_facts(str(path)).taken is None


def test_png_is_lossless_and_its_exif_chunk_is_read(tmp_path, photo):
    plain, tagged = tmp_path / "plain.png", tmp_path / "tagged.png"
    photo.save(plain)
    photo.save(tagged, exif=_exif("Sony", "ILCE-7M3"), icc_profile=b"\0" * 128)
    assert read_file_facts(str(plain)) == FileFacts(format="PNG", mode="RGB", lossless=True)
    facts = read_file_facts(str(tagged))
    assert facts.camera == "Sony ILCE-7M3" and facts.metadata == 2 and facts.quality is None


def test_webp_lossless_or_lossy_by_its_bitstream(tmp_path, photo):
    lossless, lossy = tmp_path / "a.webp", tmp_path / "b.webp"
    photo.save(lossless, lossless=True)
    photo.save(lossy, quality=80)
    assert read_file_facts(str(lossless)).lossless
    assert not read_file_facts(str(lossy)).lossless
    assert read_file_facts(str(lossy)).format == "WEBP"


def test_grey_images_say_so(tmp_path, photo):
    photo.convert("L").save(tmp_path / "grey.jpg", quality=41)
    photo.convert("LA").save(tmp_path / "grey_alpha.png")
    photo.convert("P").save(tmp_path / "palette.png")  # a palette may hold any colour
    grey = read_file_facts(str(tmp_path / "grey.jpg"))
    assert grey.grey and grey.mode == "L" and grey.quality == 41
    assert read_file_facts(str(tmp_path / "grey_alpha.png")).grey
    assert not read_file_facts(str(tmp_path / "palette.png")).grey


def test_an_orientation_tag_alone_is_no_kept_metadata(tmp_path, photo):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    photo.save(tmp_path / "turned.jpg", exif=exif)
    assert read_file_facts(str(tmp_path / "turned.jpg")).metadata == 0


def test_unreadable_files_give_no_facts(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff not really")
    for name in ("junk.jpg", "cut.jpg", "gone.jpg"):
        assert read_file_facts(str(tmp_path / name)) == FileFacts()
    assert read_file_facts(str(tmp_path)) == FileFacts()  # a folder
    assert not read_file_facts(str(tmp_path / "gone.webp")).lossless


@pytest.fixture
def kinds(tmp_path, photo) -> list:
    """Files of every kind the facts tell apart, and a file Pillow cannot open."""
    photo.save(tmp_path / "shot.jpg", quality=77, exif=_exif("Canon", "Canon EOS R5",
                                                             "2020:02:03 04:05:06"))
    photo.save(tmp_path / "tagged.png", exif=_exif("Sony", "ILCE-7M3"), icc_profile=b"\0" * 64)
    photo.save(tmp_path / "lossless.webp", lossless=True)
    photo.save(tmp_path / "lossy.webp", quality=60)
    photo.convert("L").save(tmp_path / "grey.jpg", quality=35)
    photo.convert("LA").save(tmp_path / "grey_alpha.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    return sorted(tmp_path.iterdir())


def test_the_bytes_of_a_file_give_the_facts_of_the_file(kinds):
    # One reader: what a scan records from the bytes it hashes is what the file says.
    facts = [bytes_facts(p.read_bytes()) for p in kinds]
    assert facts == [read_file_facts(str(p)) for p in kinds]
    assert len(set(facts)) == len(kinds)  # every kind tells itself apart
    assert bytes_facts(b"") == FileFacts()


def test_hashing_a_file_records_its_facts(kinds):
    config = ScanConfig()
    for path in kinds:
        st = path.stat()
        rec = hash_file(FileEntry(str(path), st.st_size, st.st_mtime_ns, ""), config)
        if path.name == "junk.jpg":
            assert not isinstance(rec, ImageRecord)  # a problem, with no facts to keep
        else:
            assert rec.facts == read_file_facts(str(path)) != FileFacts()


def _record(path, facts: FileFacts | None, fmt: str = "JPEG") -> ImageRecord:
    return ImageRecord(path=str(path), size_bytes=1, mtime_ns=1, width=8, height=8,
                       format=fmt, hash=Hash("dhash", 64, (0,)), digest=None, facts=facts)


def test_the_keep_policy_reads_only_the_files_of_records_without_facts(kinds, tmp_path):
    shot = tmp_path / "shot.jpg"
    recorded = FileFacts(format="JPEG", mode="RGB", quality=12, camera="Recorded")
    gone = tmp_path / "gone.jpg"  # no file: a record's facts are all there is of it
    headers = KeepPolicy(rules=("original",)).read_facts([
        _record(gone, recorded), _record(shot, None), _record(tmp_path / "none.jpg", None),
        _record(tmp_path / "junk.jpg", FileFacts())]).headers
    assert headers == {str(gone): recorded, str(shot): read_file_facts(str(shot))}
    # prefer-lossless: the recorded bitstream kind, else the file's.
    lossless = KeepPolicy(rules=("prefer-lossless",)).read_facts([
        _record(tmp_path / "lossy.webp", FileFacts(format="WEBP", lossless=True), "WEBP"),
        _record(tmp_path / "lossless.webp", FileFacts(format="WEBP"), "WEBP"),
        _record(tmp_path / "lossless.webp2", None, "WEBP")]).lossless
    assert lossless == {str(tmp_path / "lossy.webp")}
    assert KeepPolicy(rules=("prefer-lossless",)).read_facts([
        _record(tmp_path / "lossless.webp", None, "WEBP")]).lossless == {
        str(tmp_path / "lossless.webp")}
