import pytest

from spacy_refined.kb.normalize import alias_key, normalize_alias


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Paris", "paris"),
        ("  PARIS  ", "paris"),
        ("The Beatles", "beatles"),
        ("the  United   States", "united states"),
        ("U.S.", "us"),
        ("O'Neill", "oneill"),
        ("Zürich", "zurich"),
        ("São Paulo", "sao paulo"),
        ("AL-AIN", "al ain"),
        ("Guinea-Bissau", "guinea bissau"),
        ("Ŝtrasse", "strasse"),
        ("Straße", "strasse"),  # casefold
        ("東京", "東京"),
        ("Москва", "москва"),
        ("The", "the"),  # a lone "the" is kept
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_alias(text, expected):
    assert normalize_alias(text) == expected


def test_alias_keys_meet_across_spellings():
    assert alias_key("The U.S.") == alias_key("us") == alias_key("U.S")
    assert alias_key("Zurich") == alias_key("ZÜRICH")
    assert alias_key("Paris") != alias_key("Paris Hilton")
    assert alias_key("...") == 0  # nothing left: no key
