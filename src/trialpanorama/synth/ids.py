"""Registry id formats (formats.md §3.1), each built from a unique serial so that no two records collide.

``serial`` is unique per (trial, registration slot) across the world; the registry's own structure (year,
month, check digits) is filled from the registration date. Every id matches the registry's pattern in
conf/ictrp.yaml and conf/unify.yaml.
"""

from __future__ import annotations

_SCRAMBLE = 48_271  # a multiplier coprime to every modulus below: serial -> id number is a bijection


def _num(serial: int, digits: int) -> int:
    mod = 10**digits
    return (serial * _SCRAMBLE + 1_234_567) % mod


def registry_id(registry: str, serial: int, year: int, month: int) -> str:
    """The id as the registry (and ICTRP's TrialID) writes it; EU CTR without the member-state suffix."""
    n8 = _num(serial, 8)
    if registry == "ClinicalTrials.gov":
        return f"NCT{n8:08d}"
    if registry == "EU CTR":
        # 6 digits + 2 "check" digits carry the serial (unique below 10^8).
        return f"EUCTR{year}-{_num(serial % 10**6, 6):06d}-{serial // 10**6 % 100:02d}"
    if registry == "ChiCTR":
        return f"ChiCTR{year % 100:02d}{n8:08d}"
    if registry == "ISRCTN":
        return f"ISRCTN{n8:08d}"
    if registry == "ANZCTR":
        return f"ACTRN126{year % 100:02d}{_num(serial, 9):09d}"
    if registry == "CTRI":
        return f"CTRI/{year}/{month:02d}/{n8:06d}"
    if registry == "DRKS":
        return f"DRKS{n8:08d}"
    if registry == "JPRN":
        return f"JPRN-UMIN{_num(serial, 9):09d}"
    if registry == "IRCT":
        return f"IRCT{year}{month:02d}{_num(serial, 7):07d}N{1 + serial % 9}"
    if registry == "CRiS":
        return f"KCT{_num(serial, 7):07d}"
    if registry == "PACTR":
        return f"PACTR{year}{month:02d}{_num(serial, 9):09d}"
    if registry == "TCTR":
        return f"TCTR{year}{_num(serial, 7):07d}"
    raise ValueError(f"no id format for registry {registry!r}")


def bare_id(registry: str, trial_id: str) -> str:
    """The id as other registries cite it: EU CTR's bare EudraCT number, JPRN without its ICTRP prefix."""
    if registry == "EU CTR":
        return trial_id[len("EUCTR") :]
    if registry == "JPRN":
        return trial_id[len("JPRN-") :]
    return trial_id


def utn(serial: int) -> str:
    n = _num(serial, 8)
    return f"U1111-{n // 10000:04d}-{n % 10000:04d}"


def nih_grant(serial: int) -> str:
    """An NIH award number (activity code + institute + 6-digit serial), e.g. U10CA180868."""
    activity = ("U10", "R01", "P30", "UG1", "U01", "R21", "K23", "P50")[serial % 8]
    institute = ("CA", "HL", "DK", "AI", "NS", "MH", "AG", "HD")[(serial // 8) % 8]
    return f"{activity}{institute}{_num(serial, 6):06d}"


def pmid(base: int, serial: int) -> str:
    return str(base + serial)
