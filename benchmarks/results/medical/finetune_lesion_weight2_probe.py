import torch, sys, time
sys.path.insert(0,'.')
torch.set_num_threads(1); torch.manual_seed(0)
from apps.medical.datasets import cached_dataset, collate_studies, read_datalist, PATCH
from apps.medical.train import load_bundle, make_step
from mmcore.train import load_weights
m=load_bundle('/tmp/medrun/bundle'); load_weights(m,'/tmp/medrun/best/model.safetensors') if False else None
dl=read_datalist('/tmp/meddata/datalist.json')
tr=[{"cache":f"/tmp/meddata/cache/{e['id']}.safetensors","label":e['label'],"id":e['id']} for e in dl['training']]
va=[{"cache":f"/tmp/meddata/cache/{e['id']}.safetensors","label":e['label'],"id":e['id']} for e in dl['validation'][:8]]
tds=cached_dataset(tr, augment=True, patch=PATCH); vds=cached_dataset(va, augment=False)
step=make_step(0.0, 0, float(sys.argv[1])); opt=torch.optim.Adam(m.parameters(), lr=1e-3)
from torch.utils.data import DataLoader
t0=time.time(); n=0
while time.time()-t0 < float(sys.argv[2]):
  for b in DataLoader(tds, batch_size=4, shuffle=True, collate_fn=collate_studies):
    m.train(); opt.zero_grad(); step(m,b).loss.backward(); opt.step(); n+=1
    if time.time()-t0 > float(sys.argv[2]): break
print('steps', n, flush=True)
m.eval(); ds=[]
with torch.no_grad():
  for i in range(len(vds)):
    b=collate_studies([vds[i]]); p=m(b)["seg"].argmax(1,keepdim=True).float(); t=b.fields["seg"]
    ds.append(float(2*(p*t).sum()/(p.sum()+t.sum()))); print(va[i]['id'], round(ds[-1],3), int(p.sum()), int(t.sum()), flush=True)
print('mean dice', sum(ds)/len(ds))
