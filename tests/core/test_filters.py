"""dojot's fields projection and where conditions: every form, every error."""

import pytest

from relayrouter.core import filters
from relayrouter.core.filters import ContentFilter, FilterError, compile_fields, compile_where, project

MSG = {"attrs": {"temperature": 20, "rain": 10.5}, "metadata": {"tenant": "admin"}}


def f(selection, doc=MSG):
    return project(compile_fields(selection), doc)


# ------------------------------------------------------------------- fields

def test_fields_examples_from_dojot_documentation():
    assert f("attrs,metadata") == MSG
    assert f("metadata/tenant") == {"metadata": {"tenant": "admin"}}
    assert f("attrs(temperature,rain)") == {"attrs": {"temperature": 20, "rain": 10.5}}
    assert f("attrs/*") == {"attrs": {"temperature": 20, "rain": 10.5}}
    assert f("attrs/humidity") == {"attrs": {}}


def test_fields_missing_top_level_key_is_absent():
    assert f("nothing") == {}
    assert f("nothing/deeper") == {}


def test_fields_wildcard_in_the_middle():
    doc = {"a": {"x": {"c": 1, "d": 2}, "y": {"c": 3}, "z": {"d": 4}}}
    assert f("a/*/c", doc) == {"a": {"x": {"c": 1}, "y": {"c": 3}, "z": {}}}


def test_fields_top_level_wildcard_and_nested_groups():
    doc = {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": 4}
    assert f("*", doc) == doc
    assert f("a(b(c),e)", doc) == {"a": {"b": {"c": 1}, "e": 3}}
    assert f("a(b/d)", doc) == {"a": {"b": {"d": 2}}}


def test_fields_lists_are_projected_per_element():
    doc = {"items": [{"id": 1, "x": 2}, {"id": 3}, 7]}
    assert f("items/id", doc) == {"items": [{"id": 1}, {"id": 3}, 7]}


def test_fields_sub_selection_of_a_scalar_leaves_it_out():
    assert f("metadata/tenant/deeper") == {"metadata": {}}


def test_fields_whole_value_wins_when_both_are_asked():
    assert compile_fields("a/b,a") == {"a": None}
    assert compile_fields("a,a/b") == {"a": None}
    assert compile_fields("a/b,a/c") == {"a": {"b": None, "c": None}}


def test_fields_projection_copies():
    out = f("attrs")
    assert out == {"attrs": MSG["attrs"]}
    assert out is not MSG


@pytest.mark.parametrize("text, where", [
    ("", "empty field name at the end"),
    (",a", "empty field name before ','"),
    ("a,", "empty field name at the end"),
    ("a,,b", "empty field name before ','"),
    ("a/", "empty field name at the end"),
    ("/a", "empty field name before '/'"),
    ("a//b", "empty field name before '/'"),
    ("a(", "empty field name at the end"),
    ("a()", "empty field name before ')'"),
    ("a(b", "missing ')'"),
    ("a(b,c", "missing ')'"),
    ("a)b", "unexpected ')'"),
    ("a(b))", "unexpected ')'"),
    ("a(b)c", "unexpected 'c'"),
    ("(a)", "empty field name before '('"),
    ("a*", "'*' must stand alone"),
    ("a/b*c", "'*' must stand alone"),
])
def test_fields_malformed(text, where):
    with pytest.raises(FilterError) as caught:
        compile_fields(text)
    assert caught.value.code == 4000
    assert caught.value.uri == "relayrouter.error.filter.invalid_syntax"
    assert where in caught.value.message
    assert "position" in caught.value.message


def test_fields_not_a_string():
    with pytest.raises(FilterError, match="must be a string"):
        compile_fields(["a"])


# -------------------------------------------------------------------- where

def w(text, doc):
    return all(c.holds(doc) for c in compile_where(text))


def test_where_examples_from_dojot_documentation():
    doc = {"a": "foo", "b": "bar"}
    assert not w("a=in:bar,baz;", doc)
    assert w("a=nin:bar,baz;", doc)
    num = {"rain": 10, "temperature": 30.0}
    assert not w("rain=11;", num)
    assert w("rain=neq:11;", num)
    assert not w("rain=gt:10;", num)
    assert w("rain=gte:10;", num)
    assert not w("rain=lt:10;", num)
    assert w("rain=lte:10;", num)
    assert w("rain=eq:10;", num) and w("rain=10;", num)


def test_where_conditions_are_anded():
    doc = {"temperature": 7.5}
    assert w("temperature=gte:5.0;temperature=lt:10.0;", doc)
    assert not w("temperature=gte:5.0;temperature=lt:7;", doc)


def test_where_empty_expression_has_no_conditions():
    assert compile_where("") == ()


def test_where_nested_selector():
    doc = {"sensor": {"status": "failed"}, "attrs": {"t": 3}}
    assert w("sensor.status=in:failed,stopped;", doc)
    assert not w("sensor.status=in:ok;", doc)
    assert w("attrs.t=gt:2;", doc)


def test_where_missing_values():
    assert not w("x=eq:1;", {})
    assert not w("x=neq:1;", {})
    assert not w("x=in:1;", {})
    assert w("x=nin:1;", {})
    assert not w("x=bool:true;", {})
    assert not w("a.b=eq:1;", {"a": 3})


def test_where_zero_and_false_are_values():
    assert w("x=eq:0;", {"x": 0})
    assert w("x=bool:false;", {"x": False})
    assert w("x=in:false;", {"x": False})
    assert w("x=in:0;", {"x": 0})


def test_where_numeric_operands_and_values():
    assert w("x=eq:1e3;", {"x": 1000})
    assert w("x=eq:.5;", {"x": 0.5})
    assert w("x=eq:-2;", {"x": -2.0})
    assert w("x=gt:1;", {"x": "2.5"})  # numeric strings compare as numbers
    assert not w("x=gt:1;", {"x": "two"})
    assert not w("x=gt:1;", {"x": True})  # a boolean is not a number
    assert not w("x=eq:1;", {"x": [1]})


def test_where_set_text_forms():
    assert w("x=in:20;", {"x": 20.0})  # printed as JavaScript does
    assert w("x=in:true;", {"x": True})
    assert not w("x=in:fail;", {"x": "failed"})  # whole values, not substrings


def test_where_bool_operator():
    assert w("on=bool:true;", {"on": True})
    assert w("on=bool:1;", {"on": True})
    assert not w("on=bool:true;", {"on": False})
    assert w("on=bool:FALSE;", {"on": False})
    assert not w("on=bool:true;", {"on": "true"})


def test_where_quoted_values_and_escapes():
    [c] = compile_where('s=in:"a,b","c;d",e;')
    assert c.values == ("a,b", "c;d", "e")
    [c] = compile_where(r's=in:"x\ty","q\"z","p\\q","\n";')
    assert c.values == ("x\ty", 'q"z', "p\\q", "\n")
    [c] = compile_where('s=in:"";')
    assert c.values == ("",)
    assert w('s=in:"a b";', {"s": "a b"})


def test_where_selector_with_spaces_dashes_underscores():
    [c] = compile_where("my attr.sub-key_2=1;")
    assert c.path == ("my attr", "sub-key_2")


def test_where_default_operator_is_eq():
    [c] = compile_where("x=5;")
    assert c.operator == "eq" and c.values == (5.0,)


def test_where_value_may_contain_colon_and_equals():
    [c] = compile_where("t=in:12:30,a=b;")
    assert c.values == ("12:30", "a=b")


@pytest.mark.parametrize("text, kind, words", [
    ("x", filters.INVALID_SYNTAX, "expected '=' after selector 'x'"),
    ("x=1", filters.INVALID_SYNTAX, "missing ';'"),
    ("x=;", filters.INVALID_SYNTAX, "no value for 'x'"),
    ("x=in:;", filters.INVALID_SYNTAX, "no value for 'x'"),
    ("x=in:a,,b;", filters.INVALID_SYNTAX, "empty value in the list"),
    ("x=in:a,;", filters.INVALID_SYNTAX, "empty value in the list"),
    ("=1;", filters.INVALID_SYNTAX, "expected a selector"),
    (";", filters.INVALID_SYNTAX, "expected a selector"),
    ("x..y=1;", filters.INVALID_SYNTAX, "expected '=' after selector 'x'"),
    ("x.=1;", filters.INVALID_SYNTAX, "expected '=' after selector 'x'"),
    ("x=1;y", filters.INVALID_SYNTAX, "expected '=' after selector 'y'"),
    ("x$=1;", filters.INVALID_SYNTAX, "expected '=' after selector 'x'"),
    ('x=in:"abc;', filters.INVALID_SYNTAX, "unterminated quoted value"),
    ("x=foo:1;", filters.INVALID_OPERATOR, "unknown operator 'foo'"),
    ("x=EQ:1;", filters.INVALID_OPERATOR, "unknown operator 'EQ'"),
    (r'x=in:"a\qb";', filters.INVALID_ESCAPE_VALUE, "unsupported escape '\\q'"),
    ("x=gt:1,2;", filters.INVALID_OPERATOR_ARITY, "'gt' takes exactly 1 value, 2 given"),
    ("x=eq:1,2,3;", filters.INVALID_OPERATOR_ARITY, "'eq' takes exactly 1 value, 3 given"),
    ("x=1,2;", filters.INVALID_OPERATOR_ARITY, "'eq' takes exactly 1 value, 2 given"),
    ("x=bool:true,false;", filters.INVALID_OPERATOR_ARITY, "'bool' takes exactly 1 value"),
    ("x=gt:abc;", filters.INVALID_VALUE, "'gt' needs a number, not 'abc'"),
    ("x=lte:1.2.3;", filters.INVALID_VALUE, "needs a number"),
    ("x=neq:0x10;", filters.INVALID_VALUE, "needs a number"),
    ("x=bool:yes;", filters.INVALID_VALUE, "'bool' needs true or false, not 'yes'"),
])
def test_where_malformed(text, kind, words):
    with pytest.raises(FilterError) as caught:
        compile_where(text)
    assert (caught.value.code, caught.value.uri) == kind
    assert words in caught.value.message


def test_where_not_a_string():
    with pytest.raises(FilterError, match="must be a string"):
        compile_where(5)


def test_error_codes_match_dojot():
    assert [k[0] for k in (filters.INVALID_SYNTAX, filters.INVALID_OPERATOR, filters.INVALID_ESCAPE_VALUE,
                           filters.INVALID_OPERATOR_ARITY, filters.INVALID_VALUE)] == [4000, 4001, 4002, 4003, 4004]


# ------------------------------------------------------------------ filters

def test_content_filter_where_then_fields():
    filt = ContentFilter(fields="attrs/temperature", where="attrs.rain=gt:10;")
    assert filt.apply(MSG) == {"attrs": {"temperature": 20}}
    assert ContentFilter(fields="attrs/temperature", where="attrs.rain=gt:11;").apply(MSG) is None
    # where sees the whole message even when fields would remove the key
    assert ContentFilter(fields="metadata", where="attrs.temperature=20;").apply(MSG) == {
        "metadata": {"tenant": "admin"}}


def test_content_filter_without_expressions_passes_everything():
    assert ContentFilter().apply(MSG) is MSG


def test_content_filter_keys_ignore_spelling_order():
    assert ContentFilter("a,b", "x=1;y=in:b,a;").key == ContentFilter("b,a", "y=in:b,a;x=1;").key
    assert ContentFilter("a", "x=1;").key != ContentFilter("a", "x=2;").key
    assert ContentFilter("a").key != ContentFilter("a/b").key
