//! The profile parser's tests: valid profiles, and every kind of error
//! naming its file, line and field.

use super::*;

const OK: &str = r#"
users = 2
duration = "2s"
think_time = "10ms..20ms"

[vars]
key = "uuid"
product_id = { from = "catalog.products" }

[[scenarios]]
name = "shopper"

[[scenarios.transactions]]
name = "product"
service = "catalog"
method = "GET"
path = "/products/{product_id}"
success = [200]

[[scenarios]]
name = "claimant"

[[scenarios.transactions]]
name = "file"
service = "claims"
method = "POST"
path = "/claims"
headers = { "Idempotency-Key" = "{key}" }
body = '{"order_id": "o-{run}", "amount_cents": {user}}'
success = [201]

[[thresholds]]
transaction = "*"
p99_ms = 100
"#;

fn err(text: &str) -> String {
    LoadProfile::parse(text, "profiles/x.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn a_valid_profile_parses_with_labels_and_think_range() {
    let p = LoadProfile::parse(OK, "x").unwrap();
    assert_eq!(p.labels(), ["shopper/product", "claimant/file"]);
    assert_eq!(p.think_time.min, Duration::from_millis(10));
    assert_eq!(p.think_time.mean(), Duration::from_millis(15));
    assert_eq!(p.ramp(), 2.0);
    assert_eq!(p.services().len(), 2);
}

#[test]
fn an_unknown_field_names_the_file_line_and_field() {
    let text = OK.replace("method = \"GET\"", "method = \"GET\"\nretries = 3");
    let e = err(&text);
    assert!(e.starts_with("profiles/x.toml:17: "), "{e}");
    assert!(e.contains("scenarios.transactions.retries"), "{e}");
    assert!(e.contains("unknown field `retries`"), "{e}");
}

#[test]
fn a_wrong_type_names_the_line_and_field() {
    let e = err(&OK.replace("users = 2", "users = \"many\""));
    assert!(e.starts_with("profiles/x.toml:2: users: "), "{e}");
    let e = err(&OK.replace("duration = \"2s\"", "duration = \"2 fortnights\""));
    assert!(
        e.contains(":3: duration:") && e.contains("not a duration"),
        "{e}"
    );
}

#[test]
fn an_unknown_variable_names_the_template_line() {
    let e = err(&OK.replace("{product_id}", "{prodct_id}"));
    assert!(
        e.starts_with(
            "profiles/x.toml:17: scenarios[0].transactions[0].path: unknown variable `{prodct_id}`"
        ),
        "{e}"
    );
    assert!(e.contains("product_id"), "{e}");
}

#[test]
fn a_body_that_is_not_json_and_an_unknown_threshold_target_are_refused() {
    let e = err(&OK.replace(r#""amount_cents": {user}}"#, r#""amount_cents": {user}"#));
    assert!(e.contains("body: is not JSON"), "{e}");
    let e = err(&OK.replace(r#"transaction = "*""#, r#"transaction = "shopper/nope""#));
    assert!(
        e.contains("thresholds[0].transaction: no transaction `shopper/nope`"),
        "{e}"
    );
    assert!(e.contains("shopper/product"), "{e}");
}

#[test]
fn names_and_counts_are_checked() {
    assert!(
        err(&OK.replace("users = 2", "users = 1"))
            .contains("every scenario needs at least one user")
    );
    assert!(
        err(&OK.replace("name = \"shopper\"", "name = \"Shopper\"")).contains("scenarios[0].name")
    );
    assert!(
        err(&OK.replace("duration = \"2s\"", "duration = \"1500ms\"")).contains("whole seconds")
    );
    assert!(err(&OK.replace("success = [201]", "success = []")).contains("success"));
    assert!(
        err(&OK.replace("method = \"GET\"", "method = \"FETCH\""))
            .contains("unknown variant `FETCH`")
    );
}

#[test]
fn a_scenario_logs_in_as_a_customer_unless_it_says_staff() {
    let p = LoadProfile::parse(OK, "x").unwrap();
    assert_eq!(p.scenarios[0].login, Login::Customer);
    let text = OK.replace(
        "name = \"claimant\"\n",
        "name = \"claimant\"\nlogin = \"staff\"\n",
    );
    let p = LoadProfile::parse(&text, "x").unwrap();
    assert_eq!(
        (p.scenarios[0].login, p.scenarios[1].login),
        (Login::Customer, Login::Staff)
    );
}

#[test]
fn an_unknown_login_names_the_file_line_and_field() {
    let text = OK.replace(
        "name = \"claimant\"\n",
        "name = \"claimant\"\nlogin = \"admin\"\n",
    );
    let e = err(&text);
    assert!(
        e.starts_with("profiles/x.toml:22: scenarios.login: "),
        "{e}"
    );
    assert!(e.contains("unknown variant `admin`"), "{e}");
    assert!(e.contains("customer") && e.contains("staff"), "{e}");
    let e = err(&OK.replace("name = \"claimant\"\n", "name = \"claimant\"\nlogin = 1\n"));
    assert!(
        e.starts_with("profiles/x.toml:22: scenarios.login: "),
        "{e}"
    );
}

#[test]
fn durations_parse_as_sums() {
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn fleet_profiles_are_told_apart_from_load_profiles() {
    assert!(is_fleet_profile("port_base = 47100\n"));
    assert!(!is_fleet_profile(OK));
}

#[test]
fn shipped_load_profiles_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let names = available(&dir);
    for n in ["browse", "claims", "smoke"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    for n in names {
        LoadProfile::load(&dir, &n).unwrap_or_else(|e| panic!("{n}: {e:#}"));
    }
}
