from core.masking import mask_data, mask_id_number, mask_name, mask_phone, scrub_text


def test_mask_formats_match_the_bank_convention():
    assert mask_name("张三") == "张**"
    assert mask_name("欧阳娜娜") == "欧**"
    assert mask_name("青岛海润贸易有限公司") == "青岛****"
    assert mask_id_number("110101199003071234") == "110***********1234"
    assert mask_phone("13812345678") == "138****5678"


def test_scrub_text_masks_ids_and_phones_but_not_codes_or_amounts():
    text = "身份证110101199003071234，手机13812345678，产品LN0001，余额1234567.89元，科目130101"
    out = scrub_text(text)
    assert "110***********1234" in out and "138****5678" in out
    assert "110101199003071234" not in out and "13812345678" not in out
    assert "LN0001" in out and "1234567.89" in out and "130101" in out


def test_scrub_text_masks_unified_social_credit_codes():
    assert "91370200MA3C12345X" not in scrub_text("统一社会信用代码 91370200MA3C12345X")


def test_mask_data_walks_nested_results():
    data = {"rows": [{"customer_name": "李四", "id_number": "370202198001011234", "phone": "15912345678",
                      "note": "联系电话15912345678"}]}
    row = mask_data(data)["rows"][0]
    assert row == {"customer_name": "李**", "id_number": "370***********1234", "phone": "159****5678",
                   "note": "联系电话159****5678"}
