// Headless-Chromium test of the chat page of a running `perch serve --api-key KEY`.
//
//   node chat.test.mjs BASE_URL API_KEY ARTIFACT_DIR
//
// Chromium is Debian's (`/usr/bin/chromium`, or $PERCH_CHROMIUM), driven by playwright-core.
// Checks: the key prompt, the model list, the markdown renderer's escaping, a streamed answer
// with tokens per second, conversations kept across a reload, stopping a generation, deleting
// a conversation; saves ARTIFACT_DIR/chat.png. Prints one line per check and
// "N passed, N failed"; exits non-zero when a check fails.
import { existsSync, mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [base, key, outDir] = process.argv.slice(2);
const executablePath = process.env.PERCH_CHROMIUM || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`chromium not found at ${executablePath}: apt-get install chromium (or set PERCH_CHROMIUM)`);
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

let passed = 0, failed = 0;
const assert = (cond, msg) => { if (!cond) throw new Error(msg); };
async function check(name, fn) {
  try { await fn(); passed++; console.log(`ok   ${name}`); }
  catch (e) { failed++; console.log(`FAIL ${name}: ${e.stack || e}`); }
}

const browser = await chromium.launch({
  executablePath, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1200, height: 820 } });
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
page.setDefaultTimeout(120_000);

const assistantText = () => page.evaluate(() => {
  const all = document.querySelectorAll(".msg.assistant .body");
  return all.length ? all[all.length - 1].textContent : "";
});

await check("the page loads and asks for the API key", async () => {
  const r = await page.goto(base + "/");
  assert(r.status() === 200, `status ${r.status()}`);
  assert((r.headers()["content-type"] || "").startsWith("text/html"), "not HTML");
  await page.waitForSelector("#key-dialog[open]");
  await page.fill("#key-input", "wrong-key");
  await page.click("#key-save");
  // A wrong key: asked again.
  await page.waitForSelector("#key-dialog[open]");
  assert((await page.textContent("#key-why")).includes("refused"), "no 'refused' note");
  await page.fill("#key-input", key);
  await page.click("#key-save");
  await page.waitForFunction(() => document.querySelectorAll("#model option").length > 0);
  const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  assert(models.includes("smol"), `models: ${models}`);
  assert(await page.evaluate(() => localStorage.getItem("perch.apiKey")) === key, "key not stored");
});

await check("markdown is rendered and HTML is escaped", async () => {
  const html = await page.evaluate(() => window.perchRenderMarkdown(
    "# Title\n<img src=x onerror=alert(1)> **bold** and `a<b>`\n\n- one\n- two\n\n```js\nlet x = \"<script>\";\n```\n[link](javascript:alert(1)) [ok](https://example.org/a?b=1&c=2)"));
  assert(!/<img|<script/i.test(html), `raw HTML passed through: ${html}`);
  assert(html.includes("&lt;img src=x onerror=alert(1)&gt;"), html);
  assert(html.includes("<strong>bold</strong>") && html.includes("<code>a&lt;b&gt;</code>"), html);
  assert(html.includes("<ul><li>one</li><li>two</li></ul>") && html.includes("<h3>Title</h3>"), html);
  assert(html.includes('<pre data-lang="js"><code>let x = &quot;&lt;script&gt;&quot;;</code></pre>'), html);
  assert(!html.includes('href="javascript'), html);
  assert(html.includes('<a href="https://example.org/a?b=1&amp;c=2"'), html);
});

await check("a message gets a streamed answer with tokens per second", async () => {
  await page.click("#toggle-settings");
  await page.fill("#system", "You are a helpful assistant.");
  await page.fill("#temperature", "0");
  await page.fill("#max-tokens", "40");
  await page.fill("#input", "What is the capital of France?");
  await page.press("#input", "Enter");
  // Watch the reply grow: several distinct non-empty lengths before it is done.
  const seen = new Set();
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const t = await assistantText();
    if (t) seen.add(t.length);
    if (await page.$(".msg.assistant .meta")) break;
    await page.waitForTimeout(15);
  }
  const meta = await page.textContent(".msg.assistant .meta");
  const text = await assistantText();
  assert(text.trim().length > 0, "empty answer");
  assert(seen.size >= 2, `the answer did not stream (lengths seen: ${[...seen]})`);
  assert(/\d+ tokens/.test(meta) && /tokens\/s/.test(meta), `meta: ${meta}`);
  assert(/tokens/.test(await page.textContent("#stats")), "no stats");
  console.log(`     answer: ${JSON.stringify(text.slice(0, 80))} (${meta})`);
});

await check("conversations survive a reload (localStorage)", async () => {
  await page.reload();
  await page.waitForSelector(".msg.user");
  assert((await page.textContent(".msg.user .body")) === "What is the capital of France?", "user message lost");
  assert((await assistantText()).trim().length > 0, "answer lost");
  const title = await page.textContent("#conversations li.active span");
  assert(title.startsWith("What is the capital"), `title: ${title}`);
  assert(await page.inputValue("#system") === "You are a helpful assistant.", "system prompt lost");
  assert(!(await page.$("#key-dialog[open]")), "asked for the key again");
});

await check("a generation can be stopped", async () => {
  await page.click("#new-chat");
  await page.fill("#max-tokens", "400");
  await page.fill("#temperature", "0.8");
  await page.fill("#input", "Write a long story about a lighthouse keeper and the sea.");
  await page.press("#input", "Enter");
  await page.waitForSelector("#stop:not([hidden])");
  await page.waitForFunction(() => {
    const b = document.querySelectorAll(".msg.assistant .body");
    return b.length && b[b.length - 1].textContent.length > 20;
  });
  await page.click("#stop");
  await page.waitForSelector(".msg.assistant .meta");
  const meta = await page.textContent(".msg.assistant .meta");
  assert(meta.includes("stopped"), `meta: ${meta}`);
  assert(await page.isHidden("#stop") && await page.isEnabled("#send"), "still busy");
  const len = (await assistantText()).length;
  await page.waitForTimeout(800);
  assert((await assistantText()).length === len, "text kept growing after stop");
  const n = parseInt(meta, 10);
  assert(n > 0 && n < 400, `tokens: ${meta}`);
});

await check("screenshot saved", async () => {
  await page.click("#conversations li:nth-child(2)");
  await page.waitForSelector(".msg.user");
  await page.screenshot({ path: `${outDir}/chat.png` });
  assert(existsSync(`${outDir}/chat.png`), "no file");
});

await check("a conversation can be deleted", async () => {
  const before = await page.$$eval("#conversations li", (l) => l.length);
  await page.hover("#conversations li:first-child");
  await page.click("#conversations li:first-child button");
  const after = await page.$$eval("#conversations li", (l) => l.length);
  assert(after === before - 1, `${before} -> ${after}`);
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem("perch.conversations")).length);
  assert(stored === after, `stored ${stored}`);
});

await check("no script errors on the page", async () => {
  assert(consoleErrors.length === 0, consoleErrors.join("\n"));
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
