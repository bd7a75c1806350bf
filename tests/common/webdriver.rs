//! A small W3C WebDriver client for tests: Debian's `chromedriver` driving headless Chromium,
//! over the WebDriver HTTP protocol (sessions, navigation, elements, scripts, screenshots).
//! The driver process is started on a free port and killed when the browser is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{free_tcp_port, wait_for};

/// The element key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian puts them (`apt install chromium chromium-driver`; `.ci/run` installs them).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `profile` is a fresh directory.
    pub fn start(profile: &Path) -> Browser {
        Browser::start_with(profile, &[])
    }

    /// The same, with more Chromium arguments.
    pub fn start_with(profile: &Path, extra: &[String]) -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the console tests need Chromium: apt-get install chromium chromium-driver"
        );
        let port = free_tcp_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let root = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver", Duration::from_secs(20), || {
            let r = http.get(format!("{root}/status")).send().ok()?;
            let v: Value = r.json().ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        });
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().cloned());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        }}});
        let mut b = Browser { driver, base: root.clone(), http };
        let v = b.call("POST", "/session", caps);
        let id = v["sessionId"].as_str().expect("a WebDriver session id").to_owned();
        b.base = format!("{root}/session/{id}");
        b
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let r = req.send().unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let code = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert!(code.is_success(), "WebDriver {method} {path}: {code}: {v}");
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// The first element matching a CSS selector, if there is one.
    pub fn find(&self, css: &str) -> Option<Element> {
        let v = self.call("POST", "/elements", json!({"using": "css selector", "value": css}));
        v.as_array()?.first().and_then(|e| e[ELEMENT].as_str()).map(|s| Element(s.to_owned()))
    }

    /// Waits (up to `limit`) for an element matching `css`.
    pub fn wait_for(&self, css: &str, limit: Duration) -> Element {
        wait_for(&format!("an element {css}"), limit, || self.find(css))
    }

    pub fn click(&self, e: &Element) {
        self.call("POST", &format!("/element/{}/click", e.0), json!({}));
    }

    pub fn type_into(&self, e: &Element, text: &str) {
        self.call("POST", &format!("/element/{}/clear", e.0), json!({}));
        self.call("POST", &format!("/element/{}/value", e.0), json!({ "text": text }));
    }

    pub fn text(&self, e: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", e.0), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs a script in the page (`return ...;`) and gives back its value.
    pub fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": js, "args": [] }))
    }

    /// Waits (up to `limit`) until a script returns something truthy, and returns it.
    pub fn wait_until(&self, what: &str, limit: Duration, js: &str) -> Value {
        wait_for(what, limit, || {
            let v = self.script(js);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            truthy.then_some(v)
        })
    }

    /// A PNG screenshot of the window.
    pub fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let v = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 screenshot"))
            .unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
