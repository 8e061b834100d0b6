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
ZIP_CODE = "92618"

ALL = (FIRST_NAME, LAST_NAME, PHONE, PHONE_DIGITS, EMAIL, MEMBER_ID, GROUP_NUMBER, NOTE, MESSAGE)
