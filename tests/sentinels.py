"""PHI sentinels: distinctive fake values tests submit, so any leak into logs, audit rows,
URLs or raw storage can be searched for by exact match."""

FIRST_NAME = "Zebulonia"
LAST_NAME = "Quillfeather"
PHONE = "(949) 555-0142"
PHONE_DIGITS = "9495550142"
EMAIL = "zebulonia.quillfeather@example.org"
MEMBER_ID = "XQZ987654321"
GROUP_NUMBER = "GRP-55501"
NOTE = "Prefers calls after lunch; sister drives her"
MESSAGE = "Sentinel message about my depression history"
ZIP_CODE = "93923"  # not the clinic's own ZIP, so a leak of the patient's cannot hide behind it
DOB = "1984-03-09"
DOB_US = "03/09/1984"

ALL = (FIRST_NAME, LAST_NAME, PHONE, PHONE_DIGITS, EMAIL, MEMBER_ID, GROUP_NUMBER, NOTE, MESSAGE)
#: What the suite-wide guard looks for in logs and audit rows: the free-text sentinels above, plus the
#: date of birth and ZIP code, which audit details may not refuse by shape (dates and short numbers
#: are legitimate codes there), so only the guard can catch them.
GUARDED = (*ALL, DOB, DOB_US, ZIP_CODE)
#: Sentinels matched only as whole tokens: five digits occur by chance inside request ids and MACs.
WHOLE_TOKEN = (ZIP_CODE,)
