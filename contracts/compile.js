#!/usr/bin/env node
// Compile contracts/src/*.sol with the pinned solc (npm `solc`, WASM; no download) into the
// committed artifacts node/chain/artifacts/<Name>.json.
//
//   node contracts/compile.js           write the artifacts
//   node contracts/compile.js --check   recompile and exit 1 if any committed artifact differs
//   node contracts/compile.js --only KeyRegistry [--check]   write (or check) that artifact only
//
// Imports ("@openzeppelin/...") resolve from contracts/node_modules. Settings are fixed here
// (optimizer on, fixed runs, fixed EVM version), so the same sources always give the same bytes.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const HERE = __dirname;
const SRC = path.join(HERE, 'src');
const NODE_MODULES = path.join(HERE, 'node_modules');
const OUT = path.join(HERE, '..', 'node', 'chain', 'artifacts');
const PINNED_SOLC = '0.8.28';
// Contracts whose artifacts are committed (others compile only as dependencies).
const SETTINGS = {
  optimizer: { enabled: true, runs: 10000 },
  evmVersion: 'cancun',
  viaIR: true,
  metadata: { bytecodeHash: 'none' },
  outputSelection: {
    '*': {
      '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.deployedBytecode.immutableReferences',
        'evm.methodIdentifiers'],
    },
  },
};
// Contracts whose deployed code the node recognises on-chain (node/gov/recognition.py): their artifacts
// also carry where the runtime code holds immutables, which differ per deployment and are masked.
const CODE_RECOGNISED = new Set(['KeyregGovernor', 'KeyregTimelockGovernor', 'KeyregMembershipToken', 'KeyregTimelock']);

function fail(message) {
  process.stderr.write(`compile.js: ${message}\n`);
  process.exit(1);
}

function sha256(text) {
  return crypto.createHash('sha256').update(text).digest('hex');
}

function findImport(importPath) {
  // Resolve only inside node_modules or src; never outside the contracts directory.
  for (const base of [NODE_MODULES, SRC]) {
    const full = path.resolve(base, importPath);
    if (full.startsWith(base + path.sep) && fs.existsSync(full)) {
      return { contents: fs.readFileSync(full, 'utf8') };
    }
  }
  return { error: `import not found: ${importPath}` };
}

function main() {
  const check = process.argv.includes('--check');
  const onlyAt = process.argv.indexOf('--only');
  const only = onlyAt >= 0 ? process.argv[onlyAt + 1] : null;
  if (onlyAt >= 0 && !only) fail('--only needs a contract name');
  const version = solc.version();
  if (!version.startsWith(PINNED_SOLC + '+')) fail(`solc ${version} is not the pinned ${PINNED_SOLC}`);

  // --only compiles that contract's file alone (its imports still resolve), so a file another
  // change leaves broken meanwhile does not block it.
  const files = fs.readdirSync(SRC).filter((f) => f.endsWith('.sol') && (!only || f === `${only}.sol`)).sort();
  if (only && !files.length) fail(`no contracts/src/${only}.sol`);
  const sources = {};
  for (const f of files) sources[f] = { content: fs.readFileSync(path.join(SRC, f), 'utf8') };
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));

  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + '\n');
  if (errors.length) fail(`${errors.length} compilation error(s)`);

  fs.mkdirSync(OUT, { recursive: true });
  let differences = 0;
  for (const f of files) {
    const name = path.basename(f, '.sol');
    const contract = (output.contracts[f] || {})[name];
    if (!contract) continue; // a file without a contract of its own name (libraries, interfaces)
    if (only && name !== only) continue;
    const artifact = {
      contractName: name,
      sourceName: `contracts/src/${f}`,
      sourceSha256: sha256(sources[f].content),
      compiler: { solc: version, settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, viaIR: SETTINGS.viaIR } },
      abi: contract.abi,
      methodIdentifiers: contract.evm.methodIdentifiers,
      bytecode: '0x' + contract.evm.bytecode.object,
      deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
    };
    if (CODE_RECOGNISED.has(name)) artifact.immutableReferences = contract.evm.deployedBytecode.immutableReferences;
    const text = JSON.stringify(artifact, null, 2) + '\n';
    const target = path.join(OUT, `${name}.json`);
    if (check) {
      const current = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : '';
      if (current !== text) {
        process.stderr.write(`out of date: ${path.relative(process.cwd(), target)} (run: node contracts/compile.js)\n`);
        differences += 1;
      }
    } else {
      fs.writeFileSync(target, text);
      process.stdout.write(`wrote ${path.relative(process.cwd(), target)} (${(artifact.deployedBytecode.length - 2) / 2} bytes runtime)\n`);
    }
  }
  if (check) {
    if (differences) fail(`${differences} artifact(s) differ from the sources`);
    process.stdout.write(`artifacts match the sources (solc ${version})\n`);
  }
}

main();
