"""What MovieLens files say about users and movies, read the same way in every release: regions from ZIP
codes, years from titles, genre lists, and the code tables of ML-100K and ML-1M."""

from __future__ import annotations

import re

from movierec.data.dataset import UNKNOWN

NO_GENRES = "(no genres listed)"

INTERNATIONAL = "intl"
"""The region of a user whose postal code is not a US ZIP code."""

# The first digit of a US ZIP code is its national area (USPS); neighbouring areas are merged into
# regions big enough for regional popularity to have data behind it.
ZIP_REGIONS: dict[str, str] = {
    "0": "us-northeast",  # New England, NJ, PR
    "1": "us-northeast",  # NY, PA, DE
    "2": "us-southeast",  # DC, MD, VA, WV, NC, SC
    "3": "us-southeast",  # AL, FL, GA, MS, TN
    "4": "us-midwest",  # IN, KY, MI, OH
    "5": "us-midwest",  # IA, MN, MT, ND, SD, WI
    "6": "us-midwest",  # IL, KS, MO, NE
    "7": "us-south",  # AR, LA, OK, TX
    "8": "us-mountain",  # AZ, CO, ID, NM, NV, UT, WY
    "9": "us-west",  # AK, CA, HI, OR, WA
}
_US_ZIP = re.compile(r"^(\d)\d{4}(?:-?\d{4})?$")

# "Toy Story (1995)", "Babylon 5 (1994-1998)", a series with an en dash, stray trailing spaces.
_TITLE_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_MIN_YEAR, _MAX_YEAR = 1800, 2100

# ML-100K's u.genre, in flag order (used when u.genre itself is absent).
GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

# ML-1M's users.dat stores occupations as codes (see its README).
OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)


def region_from_zip(zip_code: str) -> str:
    """A named US region from a ZIP code, ``intl`` for any other postal code, UNKNOWN when empty."""
    code = zip_code.strip()
    if not code:
        return UNKNOWN
    match = _US_ZIP.match(code)
    return ZIP_REGIONS[match.group(1)] if match else INTERNATIONAL


def year_from_title(title: str) -> int:
    """The release year in a MovieLens title ("Heat (1995)" -> 1995); 0 when it has none."""
    match = _TITLE_YEAR.search(title)
    if not match:
        return 0
    year = int(match.group(1))
    return year if _MIN_YEAR <= year <= _MAX_YEAR else 0


def split_genres(field: str) -> tuple[str, ...]:
    if field.strip() == NO_GENRES:
        return ()
    return tuple(g.strip() for g in field.split("|") if g.strip())


def year_from_date(text: str) -> int:
    """u.item's release date is "01-Jan-1995"; used when the title carries no year."""
    tail = text.strip()[-4:]
    year = int(tail) if tail.isdigit() else 0
    return year if _MIN_YEAR <= year <= _MAX_YEAR else 0
