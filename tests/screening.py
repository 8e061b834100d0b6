"""Pre-screen answers shared by the eligibility, pipeline and workspace tests."""

#: A checklist that passes every Spravato criterion and raises no caution.
PASSING = {
    "adult": "yes", "mdd": "yes", "acute_si": "no", "adequate_trials": 2,
    "aneurysmal_vascular_disease": "no", "arteriovenous_malformation": "no", "intracerebral_hemorrhage": "no",
    "hypersensitivity": "no", "sud": "none", "transport": "yes", "availability": "yes",
    "caution_bp": "no", "caution_cardio": "no", "caution_psychosis": "no", "caution_pregnancy": "no",
    "caution_medications": "no",
}
PHQ_MODERATE = [2, 2, 2, 2, 1, 1, 1, 1, 0]  # 12, item 9 = 0
NO_RISK = {"q1": False, "q2": False, "q6": False}
