// Starts a workflow from the Temporal Web UI's Start Workflow page in headless Chromium,
// the way a person would (type into the form, click "Start Workflow"), then checks that
// the workflow exists with the right type and task queue (through the UI server's own
// API), that its UI page shows it, and that the workflows list has it. Screenshots of
// each step go to --out.
//
// usage: node start_workflow_ui.mjs --ui http://127.0.0.1:8233 [--namespace default]
//          [--task-queue posttrain] [--workflow-type PostTraining] [--input '{}']
//          [--workflow-id ID] [--out DIR] [--chromium /usr/bin/chromium]
// Prints one JSON line with the result; exits 1 when a check fails.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    ui: { type: 'string' },
    namespace: { type: 'string', default: 'default' },
    'task-queue': { type: 'string', default: 'posttrain' },
    'workflow-type': { type: 'string', default: 'PostTraining' },
    input: { type: 'string', default: '{}' },
    'workflow-id': { type: 'string', default: `ui-e2e-${Date.now()}` },
    out: { type: 'string', default: 'out' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60000' },
  },
});
if (!opt.ui) {
  console.error('--ui URL is required (the Web UI, e.g. http://127.0.0.1:8233)');
  process.exit(2);
}
const timeout = Number(opt.timeout);
const ui = opt.ui.replace(/\/$/, '');
const ns = encodeURIComponent(opt.namespace);
const id = opt['workflow-id'];
fs.mkdirSync(opt.out, { recursive: true });
const shot = (page, name) => page.screenshot({ path: path.join(opt.out, `${name}.png`), fullPage: true });

// A fresh profile every time; the flags keep Chromium from reaching the network on its
// own (no updates, sync, QUIC or background fetches) on a machine without internet.
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'posttrain-e2e-profile-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: opt.chromium,
  headless: true,
  viewport: { width: 1280, height: 1000 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const result = { workflow_id: id, ok: false, checks: {}, screenshots: opt.out };
const page = browser.pages()[0] ?? await browser.newPage();
try {
  page.setDefaultTimeout(timeout);
  await page.goto(`${ui}/namespaces/${ns}/workflows/start-workflow`, { waitUntil: 'domcontentloaded' });

  // The UI polls its API (task queue pollers, auto-refresh), so the network never goes
  // idle: wait for the elements instead.
  await page.locator('#workflowId').fill(id);
  await page.locator('#taskQueue').fill(opt['task-queue']);
  await page.locator('#workflowType').fill(opt['workflow-type']);
  // The input is a code editor: select what it holds and insert the JSON as text (typing
  // "{" would trigger the editor's bracket auto-closing).
  const editor = page.locator('.cm-content[aria-label="Data"]');
  await editor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(opt.input);
  result.checks.input_in_editor = (await editor.innerText()).trim() === opt.input.trim();
  // The task queue field lists its pollers once typed: a worker must be there.
  await page.waitForTimeout(1000);
  await shot(page, '1-filled');

  await page.getByTestId('start-workflow-button').click();

  // The UI server's API, with the page's cookies: poll until the execution exists.
  const describe = () => page.evaluate(async ([u, n, w]) => {
    const r = await fetch(`${u}/api/v1/namespaces/${n}/workflows/${encodeURIComponent(w)}`, { credentials: 'include' });
    return { status: r.status, body: await r.json().catch(() => null) };
  }, [ui, ns, id]);
  let desc;
  for (const deadline = Date.now() + timeout; Date.now() < deadline;) {
    desc = await describe();
    if (desc.status === 200) break;
    await page.waitForTimeout(250);
  }
  await shot(page, '2-submitted');
  const info = desc?.body?.workflowExecutionInfo ?? {};
  result.api_status = desc?.status;
  result.workflow_type = info.type?.name;
  result.task_queue = desc?.body?.executionConfig?.taskQueue?.name;
  result.status = info.status;
  result.checks.started = desc?.status === 200;
  result.checks.type_matches = info.type?.name === opt['workflow-type'];
  result.checks.queue_matches = result.task_queue === opt['task-queue'];

  // Its page in the UI names it and its type.
  await page.goto(`${ui}/namespaces/${ns}/workflows/${encodeURIComponent(id)}`, { waitUntil: 'domcontentloaded' });
  await page.getByText(opt['workflow-type'], { exact: true }).first().waitFor();
  result.checks.workflow_page = (await page.content()).includes(id);
  await shot(page, '3-workflow');

  // The workflows list shows it too.
  await page.goto(`${ui}/namespaces/${ns}/workflows`, { waitUntil: 'domcontentloaded' });
  await page.getByText(id, { exact: false }).first().waitFor();
  result.checks.in_list = true;
  await shot(page, '4-list');
  result.ok = Object.values(result.checks).every(Boolean);
} catch (err) {
  result.error = String(err?.message ?? err).split('\n')[0];
  try { await shot(page, 'error'); } catch { /* the page may be gone */ }
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
