'use strict'
// Interop peer for the npm package `gearman` (mreinstein/node-gearman 2.1.0): a thin
// event-emitter over the binary protocol, used here both as client and as worker.
//
// Same command line as every peer (contract in tests/interop/_peers.py):
//   node node_peer.js worker HOST PORT FUNC MODE LOGFILE [TIMEOUT]
//   node node_peer.js client HOST PORT OP FUNC ARGS...
// Clients print one JSON object on stdout; workers append "job <workload>" to LOGFILE.
const fs = require('fs')
const gearman = require('gearman')

function out(value) {
  process.stdout.write(JSON.stringify(value) + '\n', () => process.exit(0))
}

function fatal(message) {
  out({status: 'error', error: String(message)})
}

function waitForFile(path, callback) {
  const deadline = Date.now() + 60000
  const poll = () => {
    if (fs.existsSync(path) || Date.now() > deadline) callback()
    else setTimeout(poll, 50)
  }
  poll()
}

function runWorker(host, port, func, mode, logfile, timeout) {
  const worker = gearman(host, Number(port))
  worker.on('error', (err) => { console.error('worker error', err); process.exit(1) })
  worker.on('close', () => process.exit(1))
  worker.on('NOOP', () => worker.grabJob())
  worker.on('NO_JOB', () => worker.preSleep())
  worker.on('JOB_ASSIGN', (job) => {
    const workload = job.payload.toString()
    fs.appendFileSync(logfile, `job ${workload}\n`)
    const next = () => worker.grabJob()
    switch (mode) {
      case 'echo':
        worker.sendWorkComplete(job.handle, 'node:' + workload.toUpperCase())
        return next()
      case 'stream':
        worker.sendWorkData(job.handle, 'chunk1')
        worker.sendWorkStatus(job.handle, '1', '2')
        worker.sendWorkWarning(job.handle, 'careful')
        worker.sendWorkData(job.handle, 'chunk2')
        worker.sendWorkStatus(job.handle, '2', '2')
        worker.sendWorkComplete(job.handle, 'done')
        return next()
      case 'hold':
        worker.sendWorkStatus(job.handle, '1', '2')
        return waitForFile(workload, () => {
          worker.sendWorkComplete(job.handle, 'released')
          next()
        })
      case 'fail':
        worker.sendWorkFail(job.handle)
        return next()
      case 'exception':
        worker.sendWorkException(job.handle, 'boom')
        return next()
    }
    console.error('unknown worker mode', mode)
    process.exit(2)
  })
  worker.connect(() => {
    if (timeout !== undefined) worker.addFunction(func, Number(timeout))
    else worker.addFunction(func)
    worker.grabJob()
  })
}

function runClient(host, port, op, func, args) {
  const client = gearman(host, Number(port), {timeout: 40000})
  const res = {events: []}
  client.on('error', (err) => fatal(err))
  client.on('timeout', () => fatal('timeout'))
  const finish = (extra) => { Object.assign(res, extra); if (op !== 'stream') delete res.events; out(res) }
  const prioOf = (p) => ({normal: 'normal', high: 'high', low: 'low'})[p]

  if (op === 'do' || op === 'stream') {
    const [prio, workload, unique] = op === 'do' ? args : ['normal', args[0], undefined]
    client.on('OPTION_RES', () => {
      const options = {priority: prioOf(prio)}
      if (unique) options.unique_id = unique
      client.submitJob(func, workload, options)
    })
    client.on('WORK_DATA', (job) => res.events.push(['data', job.payload.toString()]))
    client.on('WORK_WARNING', (job) => res.events.push(['warning', String(job.warning)]))
    client.on('WORK_STATUS', (job) => res.events.push(['status', Number(job.percent_num), Number(job.percent_den)]))
    client.on('WORK_COMPLETE', (job) => finish({status: 'complete', result: job.payload.toString()}))
    client.on('WORK_FAIL', () => finish({status: 'fail'}))
    client.on('WORK_EXCEPTION', (job) => finish({status: 'exception', exception: String(job.exception)}))
    return client.connect(() => client.setOption('exceptions'))
  }
  if (op === 'bg') {
    const [prio, workload, unique] = args
    client.on('JOB_CREATED', (handle) => finish({handle: String(handle)}))
    const options = {priority: prioOf(prio), background: true}
    if (unique) options.unique_id = unique
    return client.connect(() => client.submitJob(func, workload, options))
  }
  if (op === 'status') {
    client.on('STATUS_RES', (st) => finish({known: st.known === '1', running: st.running === '1',
                                             num: Number(st.percent_done_num), den: Number(st.percent_done_den)}))
    return client.connect(() => client.getJobStatus(args[0]))
  }
  if (op === 'tasks') {
    // The library hands JOB_CREATED handles back in submission order; results are keyed
    // by handle so they come out in submission order too.
    const handles = []
    const results = {}
    client.on('JOB_CREATED', (handle) => handles.push(String(handle)))
    client.on('WORK_COMPLETE', (job) => {
      results[job.handle] = job.payload.toString()
      if (Object.keys(results).length === args.length) finish({results: handles.map((h) => results[h])})
    })
    return client.connect(() => args.forEach((w) => client.submitJob(func, w)))
  }
  if (op === 'shared') {
    const [unique, workload, createdFile] = args
    let handle = null
    client.on('JOB_CREATED', (h) => { handle = String(h); fs.writeFileSync(createdFile, handle) })
    client.on('WORK_COMPLETE', (job) => finish({status: 'complete', result: job.payload.toString(), handle}))
    client.on('WORK_FAIL', () => finish({status: 'fail'}))
    return client.connect(() => client.submitJob(func, workload, {unique_id: unique}))
  }
  if (op === 'admin') {
    return client.adminStatus((status) => {
      const table = {}
      for (const [name, st] of Object.entries(status)) {
        if (name === '.') continue
        table[name] = [st.total, st.running, st.available_workers]
      }
      client.adminWorkers((workers) => {
        finish({status: table, workers: workers.filter((w) => !Number.isNaN(w.fd)).map((w) => w.functions)})
      })
    })
  }
  console.error('unsupported client op', op)
  process.exit(2)
}

const argv = process.argv.slice(2)
if (argv.length < 5) {
  console.error('usage: node_peer.js worker|client HOST PORT ...')
  process.exit(2)
}
if (argv[0] === 'worker') runWorker(argv[1], argv[2], argv[3], argv[4], argv[5], argv[6])
else runClient(argv[1], argv[2], argv[3], argv[4], argv.slice(5))
