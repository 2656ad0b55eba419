# A single web server: start it, wait for the port, fetch a page.
start_all()

webserver.wait_for_unit("multi-user.target")
webserver.wait_for_unit("httpd.service")
webserver.wait_for_open_port(80)

with subtest("the index page is served"):
    page = webserver.succeed("curl --fail -s http://localhost/")
    assert "Welcome" in page, f"unexpected index page: {page[:200]!r}"

with subtest("unknown paths give 404"):
    status = webserver.succeed(
        "curl -s -o /dev/null -w '%{http_code}' http://localhost/nope"
    ).strip()
    assert status == "404", f"got HTTP {status}"

webserver.succeed("systemctl reload httpd.service")
webserver.wait_for_unit("httpd.service")
webserver.shutdown()
