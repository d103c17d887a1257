"""autobahn-js (Node) gets router-side filtered events through custom subscribe options."""


def test_node_filtered_subscription(router, node_script):
    result = node_script("wamp/filtered.js", {"url": router.ws_url, "serializer": "json"}).result()
    assert [m["attrs"]["temperature"] for m in result["plain"]] == [25, 10, 30]
    assert result["filtered"] == [{"attrs": {"temperature": 25}, "metadata": {"deviceid": "d1"}}]
    assert result["bad"]["error"] == "relayrouter.error.filter.invalid_operator"
    assert "unknown operator 'between'" in result["bad"]["args"][0]
